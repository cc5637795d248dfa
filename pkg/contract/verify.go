package contract

import (
	"fmt"
	"strconv"
	"strings"
)

// TagManifest marks a dump that ends with its manifest (pkg/dumptee).
const TagManifest = "manifest"

// VerifyDirPrefix starts the scratch directories of verifications, so an
// agent that starts can sweep what a killed one left.
const VerifyDirPrefix = "verify-"

// A BackupConfiguration's verifications are switched on by annotations, so
// Stash YAML stays valid and keeps its meaning without them.
const (
	// AnnotationVerifySchedule verifies the newest backup on a cron
	// schedule, as spec.schedule is written.
	AnnotationVerifySchedule = "stash.appscode.com/verify-schedule"
	// AnnotationVerifyEvery verifies every Nth successful backup.
	AnnotationVerifyEvery = "stash.appscode.com/verify-every"
)

// Verify is a config's verification setting.
type Verify struct {
	Schedule string
	Every    int
}

// ParseVerify reads the annotations; an error names the annotation and the
// fix. checkSchedule is schedule.Parse (which imports this package).
func ParseVerify(annotations map[string]string, checkSchedule func(string) error) (Verify, error) {
	var v Verify
	if s := strings.TrimSpace(annotations[AnnotationVerifySchedule]); s != "" {
		if err := checkSchedule(s); err != nil {
			return v, fmt.Errorf("annotation %s=%q: %v (write it as spec.schedule is written, such as \"0 3 * * 0\" or \"@weekly\")", AnnotationVerifySchedule, s, err)
		}
		v.Schedule = s
	}
	if s, ok := annotations[AnnotationVerifyEvery]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return v, fmt.Errorf("annotation %s=%q: want a whole number of backups, 1 or more", AnnotationVerifyEvery, s)
		}
		v.Every = n
	}
	return v, nil
}

// VerifySessionName names a scheduled verification, one per slot.
func VerifySessionName(config, suffix string) string {
	return ShortName(config+"-verify-", 63-len(suffix)) + suffix
}
