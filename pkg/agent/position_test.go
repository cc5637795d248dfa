package agent

import (
	"strings"
	"testing"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/sqlload"
)

func TestPositionText(t *testing.T) {
	for _, c := range []struct {
		p    sqlload.Position
		want string
	}{
		{sqlload.Position{}, "the start of the dump"},
		{sqlload.Position{Started: true, Loading: []string{""}}, "the statements after the tables, 0 tables finished"},
		{sqlload.Position{Started: true, Finished: 1, Loading: []string{"`shop`.`orders`"}}, "table `shop`.`orders`, 1 table finished before it"},
		{sqlload.Position{Started: true, Finished: 7, Loading: []string{"`a`.`x`", "", "`a`.`y`"}}, "tables `a`.`x`, `a`.`y`, 7 tables finished before them"},
	} {
		if got := positionText(c.p); got != c.want {
			t.Errorf("%+v: %q, want %q", c.p, got, c.want)
		}
	}
}

// A restore settled after its agent died says what the database holds,
// from what the restore recorded before and while it applied the dump.
func TestOrphanRestoreMessage(t *testing.T) {
	untouched := orphanRestoreMessage("agent-1", nil, false)
	if !strings.Contains(untouched, "the database was not changed") || !strings.Contains(untouched, "not retried") {
		t.Errorf("no position: %q", untouched)
	}
	if got := orphanRestoreMessage("agent-1", &stashv1beta1.Progress{BytesTotal: 10}, false); got != untouched {
		t.Errorf("a total alone is not a start: %q", got)
	}
	partial := orphanRestoreMessage("agent-1", &stashv1beta1.Progress{BytesDone: 3 << 20, Position: "table `shop`.`orders`, 1 table finished before it"}, false)
	for _, want := range []string{"partially restored", "3.000 MiB", "table `shop`.`orders`, 1 table finished", "into an empty database", "not retried"} {
		if !strings.Contains(partial, want) {
			t.Errorf("partial: %q lacks %q", partial, want)
		}
	}
	if strings.Contains(partial, "read_only") {
		t.Errorf("a restore that held nothing read-only mentions it: %q", partial)
	}
	if held := orphanRestoreMessage("agent-1", nil, true); !strings.Contains(held, "SET GLOBAL read_only=OFF") {
		t.Errorf("a restore that held the server read-only: %q", held)
	}
}
