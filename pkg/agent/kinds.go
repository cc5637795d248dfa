package agent

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// backupKind plugs BackupSessions into the shared session lifecycle.
func (a *Agent) backupKind() lifecycle.Kind[*stashv1beta1.BackupSession] {
	return lifecycle.Kind[*stashv1beta1.BackupSession]{
		Name:   stashv1beta1.KindBackupSession,
		Client: a.stash.BackupSessions(a.cfg.Namespace),
		State: func(s *stashv1beta1.BackupSession) lifecycle.State {
			return lifecycle.State{Phase: backupPhase(s.Status.Phase), ClaimedBy: s.Status.ClaimedBy, Beat: lastBeat(s.Status.HeartbeatTime, s.Status.StartTime)}
		},
		Claim: func(s *stashv1beta1.BackupSession, by string, now time.Time) {
			t := metav1.NewTime(now)
			s.Status.Phase = stashv1beta1.BackupSessionRunning
			s.Status.ClaimedBy, s.Status.StartTime, s.Status.HeartbeatTime = by, &t, &t
			granted(&s.Status.Conditions)
		},
		Beat: func(s *stashv1beta1.BackupSession, now time.Time) { s.Status.HeartbeatTime = &metav1.Time{Time: now} },
	}
}

// restoreKind plugs RestoreSessions into the shared session lifecycle.
func (a *Agent) restoreKind() lifecycle.Kind[*stashv1beta1.RestoreSession] {
	return lifecycle.Kind[*stashv1beta1.RestoreSession]{
		Name:   stashv1beta1.KindRestoreSession,
		Client: a.stash.RestoreSessions(a.cfg.Namespace),
		State: func(s *stashv1beta1.RestoreSession) lifecycle.State {
			return lifecycle.State{Phase: restorePhase(s.Status.Phase), ClaimedBy: s.Status.ClaimedBy, Beat: lastBeat(s.Status.HeartbeatTime, s.Status.StartTime)}
		},
		Claim: func(s *stashv1beta1.RestoreSession, by string, now time.Time) {
			t := metav1.NewTime(now)
			s.Status.Phase = stashv1beta1.RestoreRunning
			s.Status.ClaimedBy, s.Status.StartTime, s.Status.HeartbeatTime = by, &t, &t
			s.Status.TotalHosts = ptr.To[int32](1)
			granted(&s.Status.Conditions)
		},
		Beat: func(s *stashv1beta1.RestoreSession, now time.Time) { s.Status.HeartbeatTime = &metav1.Time{Time: now} },
	}
}

func backupPhase(p stashv1beta1.BackupSessionPhase) lifecycle.Phase {
	switch p {
	case "", stashv1beta1.BackupSessionPending:
		return lifecycle.Pending
	case stashv1beta1.BackupSessionRunning:
		return lifecycle.Running
	}
	return lifecycle.Done
}

func restorePhase(p stashv1beta1.RestorePhase) lifecycle.Phase {
	switch p {
	case "", stashv1beta1.RestorePending:
		return lifecycle.Pending
	case stashv1beta1.RestoreRunning:
		return lifecycle.Running
	}
	return lifecycle.Done
}

// lastBeat is a session's last sign of life: its heartbeat, or its start
// for sessions claimed by agents that wrote none.
func lastBeat(beat, start *metav1.Time) time.Time {
	switch {
	case beat != nil:
		return beat.Time
	case start != nil:
		return start.Time
	}
	return time.Time{}
}

// granted ends a wait for access that a session showed while Pending.
func granted(conds *[]metav1.Condition) {
	if meta.FindStatusCondition(*conds, stashv1beta1.ConditionAccessGranted) != nil {
		meta.SetStatusCondition(conds, accessCondition(nil))
	}
}
