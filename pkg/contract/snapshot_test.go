package contract

import (
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

func TestFindSnapshot(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	snap := func(id string, h int) restic.Snapshot {
		return restic.Snapshot{ID: id, ShortID: id[:8], Time: t0.Add(time.Duration(h) * time.Hour)}
	}
	// Listed out of order on purpose.
	snaps := []restic.Snapshot{snap("bbbbbbbb22", 24), snap("aaaaaaaa11", 0), snap("cccccccc33", 48)}
	cases := []struct {
		name, want string
		at         time.Time
		id         string // "" means none
	}{
		{"latest", Latest, time.Time{}, "cccccccc33"},
		{"short ID", "bbbbbbbb", time.Time{}, "bbbbbbbb22"},
		{"full ID", "aaaaaaaa11", time.Time{}, "aaaaaaaa11"},
		{"prefix", "cccccccc3", time.Time{}, "cccccccc33"},
		{"too short a prefix", "ccc", time.Time{}, ""},
		{"unknown", "dddddddd", time.Time{}, ""},
		{"at a snapshot's time", Latest, t0.Add(24 * time.Hour), "bbbbbbbb22"},
		{"between two", Latest, t0.Add(30 * time.Hour), "bbbbbbbb22"},
		{"before the first", Latest, t0.Add(-time.Hour), ""},
	}
	for _, c := range cases {
		got, ok := FindSnapshot(snaps, c.want, c.at)
		if (c.id == "") == ok || (ok && got.ID != c.id) {
			t.Errorf("%s: FindSnapshot(%q, %v) = %q %v, want %q", c.name, c.want, c.at, got.ID, ok, c.id)
		}
	}
	if _, ok := FindSnapshot(nil, Latest, time.Time{}); ok {
		t.Error("latest of no snapshots found one")
	}
	if snaps[0].ID != "bbbbbbbb22" {
		t.Error("FindSnapshot reordered its argument")
	}
}
