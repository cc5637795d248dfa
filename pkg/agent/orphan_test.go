package agent

import (
	"testing"
	"time"
)

// A Running session of another agent is orphaned only after its heartbeat
// stayed the same for a lease duration on this agent's clock, whatever
// the heartbeat's own timestamp says.
func TestSilentFor(t *testing.T) {
	lease := 15 * time.Second
	now := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	old := now.Add(-time.Hour) // the claimer's clock, or a beat from before an outage
	seen := map[string]sighting{}
	step := func(beat time.Time, d time.Duration, want time.Duration) {
		t.Helper()
		now = now.Add(d)
		if got := silentFor(seen, "s", beat, now, lease); got != want {
			t.Fatalf("at +%s: wait %s, want %s", d, got, want)
		}
	}
	step(old, 0, lease)                              // first seen: a full lease to go, however old the beat
	step(old, 10*time.Second, 5*time.Second)         // unchanged: the rest of it
	step(old.Add(time.Second), 4*time.Second, lease) // it moved: alive, start again
	step(old.Add(time.Second), 14*time.Second, time.Second)
	step(old.Add(time.Second), time.Second, 0) // silent for a lease: orphaned
	if _, ok := seen["s"]; ok {
		t.Fatal("an orphaned session's sighting was kept")
	}
}
