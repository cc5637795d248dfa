package schedule

import (
	"fmt"
	"strings"
	"time"
)

// AnnotationAlertBackupMaxAge overrides how old a config's last successful
// backup may get before the StashNoBackupSessionForTooLong alert fires.
const AnnotationAlertBackupMaxAge = "stash.appscode.com/alert-backup-max-age"

// Bounds on the grace added to a schedule's widest gap.
const (
	minGrace = 15 * time.Minute
	maxGrace = 6 * time.Hour
)

// MaxAge is how old a config's last successful backup may be before it is
// overdue: the annotation when set, else the schedule's widest gap between
// two slots plus a quarter of it (at least 15 minutes, at most 6 hours),
// so one missed slot alerts and a slow backup does not. 0 means no
// expectation: no schedule. The error names the annotation and the fix.
func MaxAge(expr string, annotations map[string]string, now time.Time) (time.Duration, error) {
	if v := strings.TrimSpace(annotations[AnnotationAlertBackupMaxAge]); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute {
			return 0, fmt.Errorf("annotation %s=%q: want a duration of at least 1m, such as 26h or 90m", AnnotationAlertBackupMaxAge, v)
		}
		return d, nil
	}
	if strings.TrimSpace(expr) == "" {
		return 0, nil
	}
	s, err := Parse(expr)
	if err != nil {
		return 0, err
	}
	gap := s.Every
	if gap == 0 {
		// The widest gap over the next 64 slots covers weekday-only and
		// month-end schedules.
		t := s.Next(now)
		for range 64 {
			n := s.Next(t)
			if n.IsZero() {
				break
			}
			gap = max(gap, n.Sub(t))
			t = n
		}
	}
	if gap == 0 {
		return 0, nil
	}
	return gap + min(max(gap/4, minGrace), maxGrace), nil
}

// VerifyMaxAge is how old a config's last verification may get: the
// bound of its verification schedule (contract.Verify's Schedule), or for
// every Nth backup (Every) N times the backup schedule's, whichever is
// shorter; 0 when verification is off.
func VerifyMaxAge(backupSchedule, verifySchedule string, every int, now time.Time) time.Duration {
	var age time.Duration
	if verifySchedule != "" {
		age, _ = MaxAge(verifySchedule, nil, now)
	}
	if every > 0 {
		if b, _ := MaxAge(backupSchedule, nil, now); b > 0 {
			if e := time.Duration(every) * b; age == 0 || e < age {
				age = e
			}
		}
	}
	return age
}
