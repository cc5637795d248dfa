package contract

import (
	"slices"
	"strings"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// Latest names the newest snapshot, in a restore rule or a download.
const Latest = "latest"

// FindSnapshot picks what a restore or a download names among a
// repository's snapshots: with at set, the newest taken at or before it;
// for "latest", the newest; else the one whose ID, short ID or ID prefix of
// at least 8 characters is want (the oldest, should a prefix match several).
func FindSnapshot(snaps []restic.Snapshot, want string, at time.Time) (restic.Snapshot, bool) {
	// Sorted here, not trusted from restic's listing, and on a copy: the
	// caller's slice is left alone.
	sorted := slices.Clone(snaps)
	slices.SortStableFunc(sorted, func(a, b restic.Snapshot) int { return a.Time.Compare(b.Time) })
	if !at.IsZero() {
		for i := len(sorted) - 1; i >= 0; i-- {
			if !sorted[i].Time.After(at) {
				return sorted[i], true
			}
		}
		return restic.Snapshot{}, false
	}
	if want == Latest {
		if len(sorted) == 0 {
			return restic.Snapshot{}, false
		}
		return sorted[len(sorted)-1], true
	}
	for _, s := range sorted {
		if s.ID == want || s.ShortID == want || (len(want) >= 8 && strings.HasPrefix(s.ID, want)) {
			return s, true
		}
	}
	return restic.Snapshot{}, false
}
