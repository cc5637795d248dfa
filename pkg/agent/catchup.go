package agent

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// catchUp creates, for each scheduled config of ours, at most one session
// for the newest slot missed since the config's last session. The session
// has the slot's name, so replicas and restarts cannot make two.
func (a *Agent) catchUp(ctx context.Context) {
	t := a.cur()
	now := a.clock()
	for _, o := range t.configs.List() {
		bc := o.(*stashv1beta1.BackupConfiguration)
		if _, ok := a.config(bc.Namespace + "/" + bc.Name); !ok || bc.Spec.Paused || bc.Spec.Schedule == "" ||
			bc.Spec.Driver == stashv1beta1.DriverVolumeSnapshotter || bc.Annotations[stashv1beta1.AnnotationCatchUp] == stashv1beta1.CatchUpNone {
			continue
		}
		spec, err := schedule.Parse(bc.Spec.Schedule)
		if err != nil {
			continue
		}
		since := a.lastActivity(t, bc)
		// The newest slot up to now, even one that passed a moment ago: the
		// scheduler fires only slots after the config joined it. If it
		// fires the same slot, the shared name keeps it to one session.
		slot, ok := spec.Prev(now, since)
		if !ok {
			continue
		}
		bs := session.NewBackup(bc, contract.SessionName(bc.Name, slot))
		bs.Annotations = map[string]string{contract.AnnotationSlot: slot.UTC().Format(time.RFC3339), stashv1beta1.AnnotationCatchUp: "true"}
		_, err = a.stash.BackupSessions(a.cfg.Namespace).Create(ctx, bs, metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
		case err != nil:
			a.log.Error("create catch-up session", "config", bc.Name, "err", err)
		default:
			a.log.Info("catch-up session created for a missed slot", "session", bs.Name, "slot", slot.UTC().Format(time.RFC3339))
		}
	}
}

// lastActivity is when the config last had a session (or was created): a
// slot before it was not missed.
func (a *Agent) lastActivity(t *term, bc *stashv1beta1.BackupConfiguration) time.Time {
	since := bc.CreationTimestamp.Time
	if bc.Status.LastSuccessTime != nil && bc.Status.LastSuccessTime.After(since) {
		since = bc.Status.LastSuccessTime.Time
	}
	for _, o := range t.sessions.List() {
		bs := o.(*stashv1beta1.BackupSession)
		if bs.Spec.Invoker.Name != bc.Name {
			continue
		}
		at := bs.CreationTimestamp.Time
		if v := bs.Annotations[contract.AnnotationSlot]; v != "" {
			if slot, err := time.Parse(time.RFC3339, v); err == nil {
				at = slot
			}
		}
		if at.After(since) {
			since = at
		}
	}
	return since
}
