package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestMaxAge(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		expr  string
		ann   string
		want  time.Duration
		error string
	}{
		{expr: "@every 5m", want: 20 * time.Minute},
		{expr: "0 * * * *", want: 75 * time.Minute},
		{expr: "0 2 * * *", want: 30 * time.Hour},
		// Weekdays only: the widest gap is Friday to Monday.
		{expr: "0 2 * * 1-5", want: 72*time.Hour + 6*time.Hour},
		{expr: "", want: 0},
		{expr: "0 2 * * *", ann: "26h", want: 26 * time.Hour},
		{expr: "0 2 * * *", ann: "soon", error: AnnotationAlertBackupMaxAge},
		{expr: "0 2 * * *", ann: "30s", error: "at least 1m"},
		{expr: "not a schedule", error: "not a schedule"},
	} {
		ann := map[string]string{}
		if c.ann != "" {
			ann[AnnotationAlertBackupMaxAge] = c.ann
		}
		got, err := MaxAge(c.expr, ann, now)
		if c.error != "" {
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Errorf("%q %q: err %v, want one naming %q", c.expr, c.ann, err, c.error)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q %q: %s, %v; want %s", c.expr, c.ann, got, err, c.want)
		}
	}
}

func TestVerifyMaxAge(t *testing.T) {
	type verify struct {
		schedule string
		every    int
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		backups string
		v       verify
		want    time.Duration
	}{
		{backups: "0 2 * * *", want: 0},
		{backups: "0 2 * * *", v: verify{"0 3 * * 0", 0}, want: 7*24*time.Hour + 6*time.Hour},
		// Every 3rd daily backup: three times the daily bound.
		{backups: "0 2 * * *", v: verify{"", 3}, want: 90 * time.Hour},
		// Both: whichever asks sooner.
		{backups: "0 2 * * *", v: verify{"0 3 * * 0", 3}, want: 90 * time.Hour},
		// Every Nth backup of a trigger-only config: no bound.
		{backups: "", v: verify{"", 2}, want: 0},
	} {
		if got := VerifyMaxAge(c.backups, c.v.schedule, c.v.every, now); got != c.want {
			t.Errorf("%q %+v: %s, want %s", c.backups, c.v, got, c.want)
		}
	}
}
