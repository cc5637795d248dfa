package schedule

import (
	"errors"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

func TestParse(t *testing.T) {
	for _, ok := range []string{"0 2 * * *", "*/5 * * * *", "@hourly", "@daily", "@every 30s", "@every 5s", "CRON_TZ=Europe/Berlin 0 2 * * *", "TZ=UTC @daily"} {
		if _, err := Parse(ok); err != nil {
			t.Errorf("Parse(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "* * *", "61 * * * *", "@every 10ms", "@every soon", "@sometimes", "0 2 * * * * *", "CRON_TZ=Mars/Base 0 2 * * *"} {
		if _, err := Parse(bad); !errors.Is(err, ErrBadSchedule) {
			t.Errorf("Parse(%q): err %v, want ErrBadSchedule", bad, err)
		}
	}
}

func TestSlotsAreStableAcrossLatency(t *testing.T) {
	s, _ := Parse("@every 5s")
	base := time.Unix(1_700_000_000, 0)
	for _, lag := range []time.Duration{0, 40 * time.Millisecond, 2 * time.Second} {
		if got := s.Slot(base.Add(lag)); !got.Equal(base) {
			t.Errorf("@every 5s fired %v late: slot %v, want %v", lag, got, base)
		}
	}
	c, _ := Parse("0 2 * * *")
	fire := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	if got := c.Slot(fire.Add(700 * time.Millisecond)); !got.Equal(fire) {
		t.Errorf("cron slot %v, want %v", got, fire)
	}
	if n := c.Next(fire); !n.Equal(fire.Add(24 * time.Hour)) {
		t.Errorf("Next = %v", n)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 2 * * *", "@every 5s", "@hourly", "CRON_TZ=Europe/Berlin 0 2 * * *", "*/0 * * * *", "@every -1s", "@every 9999999h", "TZ= * * * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		spec, err := Parse(expr)
		if err != nil {
			if !errors.Is(err, ErrBadSchedule) {
				t.Fatalf("Parse(%q) error does not wrap ErrBadSchedule: %v", expr, err)
			}
			return
		}
		now := time.Unix(1_700_000_000, 0)
		if next := spec.Next(now); !next.IsZero() && !next.After(now) {
			t.Fatalf("Parse(%q).Next(%v) = %v, not after now", expr, now, next)
		}
		_ = contract.SessionName("cfg", spec.Slot(now))
	})
}

func TestPrev(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		expr, now, since, want string // want "" means none
	}{
		{"0 2 * * *", "2026-11-24T10:00:00Z", "2026-11-20T00:00:00Z", "2026-11-24T02:00:00Z"},
		{"0 2 * * *", "2026-11-24T01:00:00Z", "2026-11-23T02:00:00Z", ""},
		{"0 2 * * *", "2026-11-24T02:00:00Z", "2026-11-23T02:00:00Z", "2026-11-24T02:00:00Z"},
		{"* * * * *", "2026-11-24T10:00:30Z", "2025-01-01T00:00:00Z", "2026-11-24T10:00:00Z"},
		{"0 0 1 1 *", "2026-11-24T10:00:00Z", "2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z"},
		{"0 0 1 1 *", "2026-11-24T10:00:00Z", "2026-02-01T00:00:00Z", ""},
		{"@every 10s", "2026-11-24T10:00:25Z", "2026-11-24T10:00:00Z", "2026-11-24T10:00:20Z"},
		{"@every 10s", "2026-11-24T10:00:25Z", "2026-11-24T10:00:20Z", ""},
		{"@hourly", "2026-11-24T10:30:00Z", "2026-11-24T08:00:00Z", "2026-11-24T10:00:00Z"},
	}
	for _, c := range cases {
		spec, err := Parse(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := spec.Prev(at(c.now), at(c.since))
		switch {
		case c.want == "" && ok:
			t.Errorf("Prev(%q, now %s, since %s) = %s, want none", c.expr, c.now, c.since, got)
		case c.want != "" && (!ok || !got.Equal(at(c.want))):
			t.Errorf("Prev(%q, now %s, since %s) = %s %v, want %s", c.expr, c.now, c.since, got, ok, c.want)
		}
	}
}
