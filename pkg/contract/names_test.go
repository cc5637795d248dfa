package contract

import (
	"strings"
	"testing"
	"time"
)

func TestNamesStayWithin63(t *testing.T) {
	long := strings.Repeat("a", 80)
	n := AgentName(long)
	if len(n) > 63 || AgentName(long) != n || AgentName(long+"b") == n {
		t.Errorf("AgentName(%d chars) = %q (%d)", len(long), n, len(n))
	}
	if got := AgentName("db"); got != "stash-agent-db" {
		t.Errorf("AgentName(db) = %q", got)
	}
	if got := RepoLease(long); len(got) > 63 || !strings.HasPrefix(got, "stash-repo-init-") {
		t.Errorf("RepoLease(%d chars) = %q", len(long), got)
	}
}

func TestDumpFile(t *testing.T) {
	for in, want := range map[string]string{"db": "/db.sql", "a/b": "/b.sql", `x\y`: `/x_y.sql`} {
		if got := DumpFile(in); got != want {
			t.Errorf("DumpFile(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSessionNameIsDeterministicAndShort(t *testing.T) {
	slot := time.Unix(1_700_000_000, 0)
	if a, b := SessionName("nightly", slot), SessionName("nightly", slot); a != b || a != "nightly-1700000000" {
		t.Errorf("SessionName = %q, %q", a, b)
	}
	long := SessionName("a-very-long-backup-configuration-name-that-goes-on-and-on-and-on", slot)
	if len(long) > 63 {
		t.Errorf("SessionName is %d chars: %q", len(long), long)
	}
}

// Slot naming is the pure decision that keeps one session per slot: the
// same config and slot always give the same name, a name fits a Kubernetes
// name (63), and a cut never leaves a trailing '-' or '.' before the suffix.
func TestSessionName(t *testing.T) {
	slot := time.Unix(1_700_000_000, 0)
	for _, c := range []struct{ config, want string }{
		{"nightly", "nightly-1700000000"},
		{strings.Repeat("a", 52), strings.Repeat("a", 52) + "-1700000000"}, // fits: never cut
	} {
		if got := SessionName(c.config, slot); got != c.want {
			t.Errorf("SessionName(%q) = %q, want %q", c.config, got, c.want)
		}
	}
	// Too long: cut with a hash of the whole name, so two configs sharing a
	// long prefix keep apart, and never a '-' or '.' before the hash.
	long := []string{strings.Repeat("a", 53), strings.Repeat("a", 52) + "-daily", strings.Repeat("a", 52) + "-weekly", strings.Repeat("a", 50) + ".-bb"}
	seen := map[string]string{}
	for _, c := range long {
		got := SessionName(c, slot)
		if len(got) > 63 || !strings.HasSuffix(got, "-1700000000") || strings.Contains(got, ".-") || strings.Contains(got, "--") {
			t.Errorf("SessionName(%q) = %q", c, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("configs %q and %q share session name %q", c, other, got)
		}
		seen[got] = c
	}
	if SessionName("nightly", slot) == SessionName("nightly", slot.Add(time.Minute)) {
		t.Error("two slots share a session name")
	}
	// The slot is a Unix time: the zone a replica runs in does not matter.
	if a, b := SessionName("c", slot.UTC()), SessionName("c", slot.In(time.FixedZone("x", 3600))); a != b {
		t.Errorf("SessionName depends on the zone: %q, %q", a, b)
	}
}
