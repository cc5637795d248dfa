package cli

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	cschedule "github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
)

// The health word is the worst problem found, and every problem names
// its fix.
func TestHealthFromConfig(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(-d)} }
	config := func(mutate func(*stashv1beta1.BackupConfiguration)) *stashv1beta1.BackupConfiguration {
		bc := &stashv1beta1.BackupConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "shop", CreationTimestamp: *at(30 * 24 * time.Hour)}}
		bc.Spec.Schedule = "0 2 * * *"
		bc.Spec.Target = &stashv1beta1.BackupTarget{Ref: stashv1beta1.TargetRef{Kind: "AppBinding", Name: "db"}}
		bc.Status.LastSuccessTime = at(10 * time.Hour)
		mutate(bc)
		return bc
	}
	for _, c := range []struct {
		name   string
		bc     *stashv1beta1.BackupConfiguration
		health string
		fix    string // in a problem
	}{
		{name: "fresh backup", bc: config(func(*stashv1beta1.BackupConfiguration) {}), health: HealthOK},
		{name: "overdue", bc: config(func(bc *stashv1beta1.BackupConfiguration) { bc.Status.LastSuccessTime = at(40 * time.Hour) }),
			health: HealthOverdue, fix: "kubectl stash trigger nightly -n shop --wait"},
		{name: "never backed up", bc: config(func(bc *stashv1beta1.BackupConfiguration) {
			bc.Status.LastSuccessTime = nil
			bc.CreationTimestamp = *at(time.Hour)
		}),
			health: HealthNoBackup},
		{name: "paused", bc: config(func(bc *stashv1beta1.BackupConfiguration) {
			bc.Spec.Paused = true
			bc.Status.LastSuccessTime = at(40 * 24 * time.Hour)
		}),
			health: HealthPaused, fix: "kubectl stash resume backupconfig nightly -n shop"},
		{name: "verification failed", bc: config(func(bc *stashv1beta1.BackupConfiguration) {
			bc.Status.Verification = &stashv1beta1.VerificationStatus{LastSession: "nightly-verify-1", LastPhase: stashv1beta1.VerificationFailed, LastVerifiedTime: at(time.Hour)}
		}), health: HealthFailing, fix: "kubectl describe verificationsession nightly-verify-1 -n shop"},
		{name: "verification overdue", bc: config(func(bc *stashv1beta1.BackupConfiguration) {
			bc.Annotations = map[string]string{contract.AnnotationVerifySchedule: "@weekly"}
			bc.Status.Verification = &stashv1beta1.VerificationStatus{LastSession: "v", LastPhase: stashv1beta1.VerificationSucceeded, LastVerifiedTime: at(9 * 24 * time.Hour), LastRestoreDuration: "41s"}
		}), health: HealthOverdue, fix: "kubectl stash verify nightly -n shop --wait"},
		{name: "PITR gap", bc: config(func(bc *stashv1beta1.BackupConfiguration) {
			bc.Annotations = map[string]string{contract.AnnotationPITR: "true"}
			bc.Status.PointInTimeRecovery = &stashv1beta1.PITRStatus{FirstRecoverableTime: at(10 * time.Hour), LastRecoverableTime: at(time.Second),
				Gaps: []stashv1beta1.PITRGap{{From: *at(time.Hour), Reason: "binlog purged"}}}
		}), health: HealthFailing, fix: "take a full backup"},
		{name: "bad verification annotation", bc: config(func(bc *stashv1beta1.BackupConfiguration) {
			bc.Annotations = map[string]string{contract.AnnotationVerifySchedule: "every tuesday"}
		}), health: HealthInvalid, fix: "fix it on BackupConfiguration nightly"},
		{name: "bad max-age annotation falls back to the schedule", bc: config(func(bc *stashv1beta1.BackupConfiguration) {
			bc.Annotations = map[string]string{cschedule.AnnotationAlertBackupMaxAge: "a day"}
			bc.Status.LastSuccessTime = at(40 * time.Hour)
		}), health: HealthOverdue, fix: "fix it on BackupConfiguration nightly"},
		{name: "no schedule, max-age annotation", bc: config(func(bc *stashv1beta1.BackupConfiguration) {
			bc.Spec.Schedule = ""
			bc.Annotations = map[string]string{cschedule.AnnotationAlertBackupMaxAge: "26h"}
			bc.Status.LastSuccessTime = at(30 * time.Hour)
		}), health: HealthOverdue, fix: "kubectl stash trigger nightly -n shop --wait"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ConfigStatus{Namespace: c.bc.Namespace, Name: c.bc.Name, Paused: c.bc.Spec.Paused}
			if c.bc.Status.LastSuccessTime != nil {
				ls := c.bc.Status.LastSuccessTime.Time
				r.LastSuccess = &ls
			}
			assess(&r, c.bc, now)
			r.settle()
			if r.Health != c.health {
				t.Errorf("health %q (%s), want %q; problems %q", r.Health, r.Reason, c.health, r.Problems)
			}
			if c.fix != "" && !strings.Contains(strings.Join(r.Problems, "\n"), c.fix) {
				t.Errorf("no problem names the fix %q: %q", c.fix, r.Problems)
			}
			if c.health == HealthOK && len(r.Problems) > 0 {
				t.Errorf("healthy with problems %q", r.Problems)
			}
		})
	}
}
