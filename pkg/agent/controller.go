package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	cschedule "github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
	"github.com/kubectl-stash/kubectl-stash/pkg/metrics"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

func (a *Agent) sync(ctx context.Context, key string) error {
	kind, nsName, _ := strings.Cut(key, "/")
	switch kind {
	case "bc":
		return a.syncConfig(ctx, nsName)
	case "bs":
		return a.syncSession(ctx, nsName)
	case "rs":
		return a.syncRestore(ctx, nsName)
	case "vs":
		return a.syncVerify(ctx, nsName)
	case "orphans":
		a.recoverOrphans(ctx)
	}
	return nil
}

// ours reports whether a target names this agent's AppBinding.
func (a *Agent) ours(ref stashv1beta1.TargetRef) bool {
	return ref.Kind == appcatalog.KindAppBinding && ref.Name == a.cfg.AppBinding &&
		(ref.Namespace == "" || ref.Namespace == a.cfg.Namespace)
}

func (a *Agent) config(nsName string) (*stashv1beta1.BackupConfiguration, bool) {
	obj, ok, _ := a.cur().configs.GetByKey(nsName)
	if !ok {
		return nil, false
	}
	bc := obj.(*stashv1beta1.BackupConfiguration)
	if bc.Spec.Target == nil || !a.ours(bc.Spec.Target.Ref) {
		return nil, false
	}
	return bc, true
}

// syncConfig keeps the schedule and the config's status in step with its spec.
func (a *Agent) syncConfig(ctx context.Context, nsName string) error {
	_, name, _ := strings.Cut(nsName, "/")
	bc, ok := a.config(nsName)
	if !ok {
		a.mu.Lock()
		_, had := a.maxAge[name]
		delete(a.maxAge, name)
		a.mu.Unlock()
		if _, exists, _ := a.cur().configs.GetByKey(nsName); had && !exists {
			a.forgetMetrics(name)
		}
		a.cur().sched.Remove(name)
		a.cur().sched.Remove(verifySlotKey(name))
		a.syncArchive(ctx, name, nil, contract.PITR{})
		return nil
	}
	phase, cond := stashv1beta1.BackupInvokerReady, metav1.Condition{Type: stashv1beta1.ConditionValidationPassed, Status: metav1.ConditionTrue, Reason: "Valid", Message: "the spec is valid"}
	var next *metav1.Time
	switch {
	case bc.Spec.Driver == stashv1beta1.DriverVolumeSnapshotter:
		a.cur().sched.Remove(name)
		phase = stashv1beta1.BackupInvokerInvalid
		cond = metav1.Condition{Type: stashv1beta1.ConditionValidationPassed, Status: metav1.ConditionFalse, Reason: "UnsupportedDriver", Message: "driver VolumeSnapshotter is not supported for databases; use Restic"}
	case bc.Spec.Paused || bc.Spec.Schedule == "":
		a.cur().sched.Remove(name)
	default:
		spec, err := a.cur().sched.Set(name, bc.Spec.Schedule)
		if err != nil {
			phase = stashv1beta1.BackupInvokerInvalid
			cond = metav1.Condition{Type: stashv1beta1.ConditionValidationPassed, Status: metav1.ConditionFalse, Reason: "InvalidSchedule", Message: err.Error()}
			a.event(ctx, bc, corev1.EventTypeWarning, "InvalidSchedule", fmt.Sprintf("BackupConfiguration %s: %v", name, err))
		} else {
			next = &metav1.Time{Time: spec.Next(a.clock()).Truncate(time.Second)}
		}
	}
	if _, err := a.validateKeep(bc); err != nil {
		phase = stashv1beta1.BackupInvokerInvalid
		cond = metav1.Condition{Type: stashv1beta1.ConditionValidationPassed, Status: metav1.ConditionFalse, Reason: "InvalidRetentionPolicy", Message: err.Error()}
	}
	if err := a.checkHooks(preBackupHook(bc), postBackupHook(bc)); err != nil {
		// Its sessions would fail before the dump: say so now.
		phase = stashv1beta1.BackupInvokerInvalid
		cond = metav1.Condition{Type: stashv1beta1.ConditionValidationPassed, Status: metav1.ConditionFalse, Reason: "InvalidHook", Message: err.Error()}
	}
	pitr, perr := contract.ParsePITR(bc.Annotations)
	if perr != nil {
		phase = stashv1beta1.BackupInvokerInvalid
		cond = metav1.Condition{Type: stashv1beta1.ConditionValidationPassed, Status: metav1.ConditionFalse, Reason: "InvalidPointInTimeRecovery", Message: perr.Error()}
	}
	if phase == stashv1beta1.BackupInvokerInvalid {
		pitr.On = false
	}
	// A bad verification setting is refused in a condition of its own:
	// it must not stop the backups or the binlog archive.
	verify, verr := contract.ParseVerify(bc.Annotations, cschedule.Check)
	if verr == nil && verify.Schedule != "" && !bc.Spec.Paused && phase != stashv1beta1.BackupInvokerInvalid {
		if _, err := a.cur().sched.Set(verifySlotKey(name), verify.Schedule); err != nil {
			verr = fmt.Errorf("annotation %s: %w", contract.AnnotationVerifySchedule, err)
		}
	} else {
		a.cur().sched.Remove(verifySlotKey(name))
	}
	vcond := verifyCondition(verify, verr)
	a.syncArchive(ctx, name, bc, pitr)
	a.pushMaxAge(ctx, bc, phase == stashv1beta1.BackupInvokerInvalid, verify, verr)
	cond.ObservedGeneration = bc.Generation
	same := bc.Status.Phase == phase && bc.Status.ObservedGeneration == bc.Generation &&
		meta.IsStatusConditionPresentAndEqual(bc.Status.Conditions, cond.Type, cond.Status) &&
		(vcond == nil && meta.FindStatusCondition(bc.Status.Conditions, stashv1beta1.ConditionVerificationScheduled) == nil ||
			vcond != nil && sameCondition(bc.Status.Conditions, *vcond)) &&
		(next == nil) == (bc.Status.NextSchedule == nil) && (next == nil || !next.After(bc.Status.NextSchedule.Time.Add(time.Second)))
	if same {
		return nil
	}
	return a.updateConfigStatus(ctx, name, func(c *stashv1beta1.BackupConfiguration) {
		c.Status.Phase = phase
		c.Status.ObservedGeneration = c.Generation
		c.Status.NextSchedule = next
		meta.SetStatusCondition(&c.Status.Conditions, cond)
		if vcond != nil {
			meta.SetStatusCondition(&c.Status.Conditions, *vcond)
		} else {
			meta.RemoveStatusCondition(&c.Status.Conditions, stashv1beta1.ConditionVerificationScheduled)
		}
	})
}

// pushMaxAge publishes how old the config's last successful backup may get
// (the alert StashNoBackupSessionForTooLong compares against it), and its
// last verification (StashVerificationOverdue), when they changed: +Inf
// while none is expected. A bad annotation is refused in a Warning Event
// and the schedule's own bound is used.
func (a *Agent) pushMaxAge(ctx context.Context, bc *stashv1beta1.BackupConfiguration, invalid bool, verify contract.Verify, verr error) {
	var ages configAges
	if !bc.Spec.Paused && !invalid && bc.Spec.Driver != stashv1beta1.DriverVolumeSnapshotter {
		var err error
		ages.backup, err = cschedule.MaxAge(bc.Spec.Schedule, bc.Annotations, a.clock())
		if err != nil {
			a.event(ctx, bc, corev1.EventTypeWarning, "InvalidAnnotation", fmt.Sprintf("BackupConfiguration %s: %v; alerts use the schedule's own bound", bc.Name, err))
			ages.backup, _ = cschedule.MaxAge(bc.Spec.Schedule, nil, a.clock())
		}
		if verr == nil {
			ages.verify = cschedule.VerifyMaxAge(bc.Spec.Schedule, verify.Schedule, verify.Every, a.clock())
		}
	}
	ages.invalid = invalid
	now := a.clock()
	a.mu.Lock()
	old, seen := a.maxAge[bc.Name]
	if seen && old.backup == ages.backup && old.verify == ages.verify && old.invalid == ages.invalid && now.Sub(old.pushed) < repushEvery {
		a.mu.Unlock()
		return
	}
	ages.pushed = now
	a.maxAge[bc.Name] = ages
	a.mu.Unlock()
	res := metrics.ConfigResult{Common: a.common(bc), MaxAge: ages.backup, VerifyMaxAge: ages.verify, Created: bc.CreationTimestamp.Time, Invalid: invalid}
	a.metrics.SetConfig(res)
	// Not in the sync's way: a Pushgateway that does not answer holds a
	// push for up to 30 s.
	go a.push(context.WithoutCancel(ctx), bc, metrics.ConfigRegistry(res))
}

// forgetMetrics drops a deleted config's metrics, here and in the
// Pushgateway, whose last values would keep its alerts firing. Only for a
// config this agent served (others' agents see it too), and only when it
// is gone: one moved to another AppBinding is that agent's to push.
func (a *Agent) forgetMetrics(config string) {
	c := metrics.Common{InvokerKind: stashv1beta1.KindBackupConfiguration, InvokerName: config, Namespace: a.cfg.Namespace}
	a.metrics.ForgetInvoker(c.InvokerKind, c.Namespace, c.InvokerName)
	if a.cfg.Pushgateway == "" {
		return
	}
	go func() {
		p := &metrics.Pusher{URL: a.cfg.Pushgateway, Job: metrics.JobName(c), Grouping: metrics.Grouping(contract.BackupHost)}
		if err := p.Delete(); err != nil {
			a.log.Warn("could not delete a deleted config's metrics from the Pushgateway", "config", config, "err", err.Error())
		}
	}()
}

// configAges are the bounds pushMaxAge last pushed for a config.
type configAges struct {
	backup, verify time.Duration
	invalid        bool
	pushed         time.Time
}

// repushEvery: a config's bounds are pushed again at the first sync this
// long after the last push (the informers resync every 10 min), so a
// Pushgateway restarted without persistence gets them back and the
// overdue alerts keep working.
const repushEvery = 30 * time.Minute

func (a *Agent) validateKeep(bc *stashv1beta1.BackupConfiguration) (bool, error) {
	p := bc.Spec.RetentionPolicy
	for _, v := range []int64{p.KeepLast, p.KeepHourly, p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepYearly} {
		if v < 0 {
			return false, fmt.Errorf("retentionPolicy keep counts must not be negative")
		}
	}
	return true, nil
}

// fireSlot creates the slot's BackupSession (or VerificationSession); the
// name makes it idempotent.
func (a *Agent) fireSlot(ctx context.Context, config string, slot time.Time) {
	if name, ok := strings.CutPrefix(config, verifySlotPrefix); ok {
		a.fireVerify(ctx, name, "-"+strconv.FormatInt(slot.Unix(), 10), contract.Latest)
		return
	}
	bc, ok := a.config(a.cfg.Namespace + "/" + config)
	if !ok || bc.Spec.Paused {
		return
	}
	bs := session.NewBackup(bc, contract.SessionName(config, slot))
	bs.Annotations = map[string]string{contract.AnnotationSlot: slot.UTC().Format(time.RFC3339)}
	_, err := a.stash.BackupSessions(a.cfg.Namespace).Create(ctx, bs, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		a.log.Info("slot already has a session", "session", bs.Name)
	case err != nil:
		a.log.Error("create scheduled session", "config", config, "err", err)
	default:
		a.log.Info("scheduled session created", "session", bs.Name, "slot", slot.UTC().Format(time.RFC3339))
	}
	// The config's nextSchedule moves on now, not when the session ends:
	// `kubectl stash status` takes a slot long past for an agent that stopped.
	a.cur().queue.AddAfter("bc/"+a.cfg.Namespace+"/"+config, time.Second)
}

func (a *Agent) syncSession(ctx context.Context, nsName string) error {
	t := a.cur()
	obj, ok, _ := t.sessions.GetByKey(nsName)
	if !ok {
		return nil
	}
	bs := obj.(*stashv1beta1.BackupSession)
	if bs.Spec.Invoker.Kind != stashv1beta1.KindBackupConfiguration {
		return nil
	}
	bc, ok := a.config(a.cfg.Namespace + "/" + bs.Spec.Invoker.Name)
	if !ok {
		return nil // another database's session, or its config is gone
	}
	if bs.Status.Phase == stashv1beta1.BackupSessionRunning && !a.runsSession(bs) {
		// Another agent's (or a stale claim): time its heartbeat, unless
		// that is under way (every beat is an update that lands here).
		if !t.sightings.Timing("bs/" + bs.Name) {
			t.queue.Add("orphans")
		}
		return nil
	}
	if bs.Status.Phase != "" && bs.Status.Phase != stashv1beta1.BackupSessionPending {
		return nil
	}
	if nb := bs.Annotations[contract.AnnotationNotBefore]; nb != "" {
		if t, err := time.Parse(time.RFC3339, nb); err == nil && t.After(a.clock()) {
			a.cur().queue.AddAfter("bs/"+nsName, t.Sub(a.clock()))
			return nil
		}
	}
	a.mu.Lock()
	if a.draining {
		a.mu.Unlock()
		return nil // left Pending for the next agent
	}
	other := a.running[bc.Name]
	if other == "" {
		for _, o := range t.sessions.List() {
			s := o.(*stashv1beta1.BackupSession)
			if s.Name != bs.Name && s.Spec.Invoker.Name == bc.Name && s.Status.Phase == stashv1beta1.BackupSessionRunning {
				other = s.Name
			}
		}
		if other != "" {
			// Running in the cache only (an orphan this leader just
			// settled, say): the cache may lag, so ask the API server.
			a.mu.Unlock()
			cur, err := a.stash.BackupSessions(a.cfg.Namespace).Get(ctx, other)
			if err == nil && cur.Status.Phase != stashv1beta1.BackupSessionRunning || apierrors.IsNotFound(err) {
				other = ""
			}
			if other != "" && a.clock().Sub(bs.CreationTimestamp.Time) < verdictWait*a.cfg.SessionLease {
				// Another agent's session, maybe an orphan whose heartbeat
				// is being timed: wait for the verdict rather than skip
				// (a catch-up session after a crash meets exactly this).
				t.queue.AddAfter("bs/"+nsName, a.backups.HeartbeatEvery())
				return nil
			}
			a.mu.Lock()
			if a.draining {
				a.mu.Unlock()
				return nil
			}
			if r := a.running[bc.Name]; r != "" {
				other = r
			}
		}
	}
	if other != "" && other != bs.Name && other == bs.Annotations[contract.AnnotationRetryOf] {
		// The session this one retries is still finishing: wait for it.
		a.mu.Unlock()
		t.queue.AddAfter("bs/"+nsName, time.Second)
		return nil
	}
	if other != "" && other != bs.Name {
		a.mu.Unlock()
		return a.skip(ctx, bs, fmt.Sprintf("session %s of BackupConfiguration %s is still running; this one was skipped", other, bc.Name))
	}
	// Reserved; then the access check, only for the session that would
	// run (a storm of skipped ones costs no API calls for it).
	a.running[bc.Name] = bs.Name
	a.mu.Unlock()
	release := func() {
		a.mu.Lock()
		delete(a.running, bc.Name)
		a.mu.Unlock()
	}
	if err := a.access(ctx, bc.Spec.Repository); errors.Is(err, errNoAccess) {
		release()
		return waitForAccess(ctx, a, a.backups, "bs/"+nsName, bs.Name, func(s *stashv1beta1.BackupSession) *[]metav1.Condition { return &s.Status.Conditions }, bs, err)
	}
	claimed, ok, err := a.backups.Claim(ctx, bs)
	if err != nil || !ok {
		release()
		return err
	}
	a.work.Add(1)
	go func() {
		defer a.work.Done()
		hbCtx, stopHeartbeat := context.WithCancel(a.workCtx)
		go a.backups.Heartbeat(hbCtx, claimed.Name)
		run := a.runBackup(a.workCtx, bc, claimed)
		stopHeartbeat()
		release()
		a.afterBackup(a.workCtx, run)
	}()
	return nil
}

func (a *Agent) skip(ctx context.Context, bs *stashv1beta1.BackupSession, reason string) error {
	c := bs.DeepCopy()
	now := metav1.NewTime(a.clock())
	c.Status.Phase = stashv1beta1.BackupSessionSkipped
	c.Status.Message = reason
	c.Status.CompletionTime = &now
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: stashv1beta1.ConditionBackupSkipped, Status: metav1.ConditionTrue, Reason: "AlreadyRunning", Message: reason})
	_, err := a.stash.BackupSessions(a.cfg.Namespace).UpdateStatus(ctx, c)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		a.event(ctx, c, corev1.EventTypeNormal, "BackupSkipped", reason)
	}
	return err
}

// verdictWait, in lease durations, is how long a new session waits for
// another agent's Running session of its config to end or be settled as
// orphaned (one lease of silence, then restic's lookup) before it is
// Skipped.
const verdictWait = 3

// recoverOrphans settles Running sessions (backups and restores) of this
// database that no live agent runs. A session claimed by another agent is
// not settled at once: that agent may have lost the Lease in an API outage
// and still be running it. It is settled once its heartbeat has not moved
// for a lease duration, measured on this agent's clock (clocks of two
// nodes need not agree); this runs again when the earliest such wait ends.
func (a *Agent) recoverOrphans(ctx context.Context) {
	t := a.cur()
	now := a.clock()
	var next time.Duration // until the earliest sighting is due; 0: none
	due := func(d time.Duration) {
		if next == 0 || d < next {
			next = d
		}
	}
	seen := map[string]bool{}
	// silent times one orphan: whether its heartbeat has been still for a
	// lease duration, else when to look again.
	silent := func(key string, beat time.Time) bool {
		seen[key] = true
		if wait := t.sightings.Silent(key, beat, now, a.cfg.SessionLease); wait > 0 {
			due(wait)
			return false
		}
		return true
	}
	for _, o := range t.sessions.List() {
		bs := o.(*stashv1beta1.BackupSession)
		if bs.Status.Phase != stashv1beta1.BackupSessionRunning || a.runsSession(bs) {
			continue
		}
		bc, ok := a.config(a.cfg.Namespace + "/" + bs.Spec.Invoker.Name)
		if !ok || !silent("bs/"+bs.Name, a.backupKind().State(bs).Beat) {
			continue
		}
		if err := a.settleOrphanBackup(ctx, bc, bs); err != nil {
			due(a.cfg.SessionLease) // try again
		}
	}
	for _, o := range t.restores.List() {
		rs := o.(*stashv1beta1.RestoreSession)
		if rs.Status.Phase != stashv1beta1.RestoreRunning || rs.Spec.Target == nil || !a.ours(rs.Spec.Target.Ref) || a.runsRestore(rs) {
			continue
		}
		if !silent("rs/"+rs.Name, a.restoreKind().State(rs).Beat) {
			continue
		}
		if err := a.settleOrphanRestore(ctx, rs); err != nil {
			due(a.cfg.SessionLease)
		}
	}
	for _, o := range t.verifies.List() {
		vs := o.(*stashv1beta1.VerificationSession)
		if vs.Status.Phase != stashv1beta1.VerificationRunning || a.runsVerify(vs) {
			continue
		}
		// Ours, or one whose config is gone (no agent would settle it else).
		_, ours, exists := a.verifyConfig(vs)
		if (!ours && (exists || vs.Spec.Target != nil)) || !silent("vs/"+vs.Name, a.verifyKind().State(vs).Beat) {
			continue
		}
		if err := a.settleOrphanVerify(ctx, vs); err != nil {
			due(a.cfg.SessionLease)
		}
	}
	t.sightings.Keep(func(key string) bool { return seen[key] })
	if next > 0 {
		t.queue.AddAfter("orphans", next)
	}
}

// settleOrphanBackup records a backup whose agent stopped: Succeeded when
// restic saved its snapshot, else Failed and retried per the config. An
// error means it is to be tried again.
func (a *Agent) settleOrphanBackup(ctx context.Context, bc *stashv1beta1.BackupConfiguration, bs *stashv1beta1.BackupSession) error {
	// The write goes through only if the heartbeat is still the one
	// timed: restic may take a while first.
	beat := a.backupKind().State(bs).Beat
	still := func(s *stashv1beta1.BackupSession) bool {
		return s.Status.ClaimedBy == bs.Status.ClaimedBy && a.backupKind().State(s).Beat.Equal(beat)
	}
	saved, lerr := a.inspectOrphan(ctx, bc, bs)
	if saved != nil {
		if err := a.recoverSaved(ctx, bc, bs, saved, still); err != nil && !errors.Is(err, lifecycle.ErrSettled) {
			return err
		}
		return nil
	}
	msg := fmt.Sprintf("the agent %s running this session stopped before it finished; the backup did not complete, and no snapshot of it was found", bs.Status.ClaimedBy)
	if lerr != nil {
		msg = fmt.Sprintf("the agent %s running this session stopped before it finished; whether it saved a snapshot is unknown (%v)", bs.Status.ClaimedBy, lerr)
	}
	end := a.clock()
	err := a.backups.Settle(ctx, bs.Name, still, func(s *stashv1beta1.BackupSession) {
		now := metav1.NewTime(end)
		s.Status.Phase = stashv1beta1.BackupSessionFailed
		s.Status.Message = msg
		s.Status.CompletionTime = &now
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stashv1beta1.ConditionBackupDisrupted, Status: metav1.ConditionTrue, Reason: "AgentStopped", Message: msg})
	})
	switch {
	case err == nil:
		a.event(ctx, bs, corev1.EventTypeWarning, "BackupDisrupted", msg)
		a.push(ctx, bc, metrics.BackupRegistry(a.backupResult(bc, false, sessionStart(bs.Status.StartTime, end), end, nil)))
		a.scheduleRetry(ctx, bc, bs, fmt.Errorf("disrupted"))
	case errors.Is(err, lifecycle.ErrSettled):
		a.log.Info("the session's own agent settled it or showed it is alive meanwhile", "session", bs.Name, "err", err.Error())
	default:
		a.log.Error("could not settle an orphaned session; trying again", "session", bs.Name, "err", err.Error())
		return err
	}
	return nil
}

// orphanInspectTimeout bounds the restic runs spent on one orphan, so an
// unreachable backend cannot hold up the agent's start for long.
const orphanInspectTimeout = 2 * time.Minute

// inspectOrphan removes the locks a stopped agent left (restic removes only
// those it can prove stale) and finds the snapshot the session saved, if it
// got that far: restic saves a snapshot only after the dump ended well, and
// an agent can be killed between that and writing the status.
func (a *Agent) inspectOrphan(ctx context.Context, bc *stashv1beta1.BackupConfiguration, bs *stashv1beta1.BackupSession) (*restic.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, orphanInspectTimeout)
	defer cancel()
	repo, rr, cleanup, err := a.openRepo(ctx, bc.Spec.Repository, false)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if err := rr.Unlock(ctx, false); err != nil {
		a.log.Warn("could not remove stale locks", "repository", repo.Name, "err", err)
	} else {
		a.log.Info("removed stale locks", "repository", repo.Name)
	}
	snaps, err := rr.Snapshots(ctx, contract.BackupHost, contract.SessionTags(a.cfg.AppBinding, bs.Name, string(bs.UID)))
	switch {
	case errors.Is(err, restic.ErrRepoNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("listing the snapshots of Repository %s: %w", repo.Name, err)
	case len(snaps) == 0:
		return nil, nil
	}
	return &snaps[len(snaps)-1], nil
}

// recoverSaved records a session whose agent stopped after restic saved
// its snapshot: the backup is there, so the session Succeeded and is not
// retried. Retention and the Repository's status catch up at the next
// backup.
func (a *Agent) recoverSaved(ctx context.Context, bc *stashv1beta1.BackupConfiguration, bs *stashv1beta1.BackupSession, snap *restic.Snapshot, still func(*stashv1beta1.BackupSession) bool) error {
	sum := snap.BackupSummary()
	if sum == nil {
		sum = &restic.Summary{SnapshotID: snap.ID, BackupStart: snap.Time, BackupEnd: snap.Time}
	}
	end := sum.BackupEnd
	start := end
	if bs.Status.StartTime != nil {
		start = bs.Status.StartTime.Time
	}
	dur := end.Sub(start).Round(time.Second)
	msg := fmt.Sprintf("%s; the agent %s stopped before recording it, so retention runs with the next backup", savedMessage(sum, dur), bs.Status.ClaimedBy)
	stats := a.hostStats(sum, stashv1beta1.HostSucceeded, dur)
	err := a.backups.Settle(ctx, bs.Name, still, func(s *stashv1beta1.BackupSession) {
		now := metav1.NewTime(end)
		s.Status.Phase = stashv1beta1.BackupSessionSucceeded
		s.Status.SessionDuration = dur.String()
		s.Status.CompletionTime = &now
		s.Status.Message = msg
		s.Status.Targets = []stashv1beta1.BackupTargetStatus{{
			Ref: bc.Spec.Target.Ref, TotalHosts: ptr.To[int32](1), Phase: stashv1beta1.TargetPhase(stashv1beta1.HostSucceeded),
			Stats: []stashv1beta1.HostBackupStats{stats},
		}}
	})
	if err != nil {
		a.log.Error("could not record a stopped agent's saved snapshot", "session", bs.Name, "err", err.Error())
		return err
	}
	a.log.Info("a stopped agent's session had saved its snapshot", "session", bs.Name, "snapshot", shortID(snap.ID))
	_ = a.updateConfigStatus(ctx, bc.Name, func(c *stashv1beta1.BackupConfiguration) {
		if c.Status.LastSuccessTime == nil || c.Status.LastSuccessTime.Time.Before(end) {
			c.Status.LastSuccessfulSession = bs.Name
			c.Status.LastSuccessTime = &metav1.Time{Time: end}
		}
	})
	a.event(ctx, bs, corev1.EventTypeNormal, "BackupSessionSucceeded", msg)
	a.push(ctx, bc, metrics.BackupRegistry(a.backupResult(bc, true, start, end, sum)))
	return nil
}

// sessionStart is a settled session's start: its recorded one, else end.
func sessionStart(t *metav1.Time, end time.Time) time.Time {
	if t == nil {
		return end
	}
	return t.Time
}

// runsSession reports whether this agent is running bs right now. A
// session claimed under this agent's name that it does not run (a claim
// the API server applied though the call failed) is an orphan too.
func (a *Agent) runsSession(bs *stashv1beta1.BackupSession) bool {
	if bs.Status.ClaimedBy != a.identity {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running[bs.Spec.Invoker.Name] == bs.Name
}

func (a *Agent) updateSessionStatus(ctx context.Context, name string, mutate func(*stashv1beta1.BackupSession)) error {
	return lifecycle.UpdateStatus(ctx, a.stash.BackupSessions(a.cfg.Namespace), name, mutate)
}

func (a *Agent) updateConfigStatus(ctx context.Context, name string, mutate func(*stashv1beta1.BackupConfiguration)) error {
	return lifecycle.UpdateStatus(ctx, a.stash.BackupConfigurations(a.cfg.Namespace), name, mutate)
}

// event records a core/v1 Event on an object. Messages never hold secrets.
func (a *Agent) event(ctx context.Context, obj runtime.Object, typ, reason, msg string) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	kind, apiVersion := gvk.Kind, gvk.GroupVersion().String()
	switch obj.(type) {
	case *stashv1beta1.BackupSession:
		kind, apiVersion = stashv1beta1.KindBackupSession, stashv1beta1.GroupVersion.String()
	case *stashv1beta1.BackupConfiguration:
		kind, apiVersion = stashv1beta1.KindBackupConfiguration, stashv1beta1.GroupVersion.String()
	case *stashv1beta1.RestoreSession:
		kind, apiVersion = stashv1beta1.KindRestoreSession, stashv1beta1.GroupVersion.String()
	case *stashv1beta1.VerificationSession:
		kind, apiVersion = stashv1beta1.KindVerificationSession, stashv1beta1.GroupVersion.String()
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	now := metav1.NewTime(a.clock())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: m.GetName() + ".", Namespace: a.cfg.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: kind, APIVersion: apiVersion, Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(), ResourceVersion: m.GetResourceVersion()},
		Reason:         reason, Message: msg, Type: typ,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source:              corev1.EventSource{Component: "stash-agent", Host: a.cfg.PodName},
		ReportingController: "kubectl-stash/agent", ReportingInstance: a.identity,
	}
	if _, err := a.kube.Events(a.cfg.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		a.log.Warn("could not record event", "reason", reason, "err", err)
	}
}

// trimHistory deletes the oldest finished sessions beyond the config's limit.
func (a *Agent) trimHistory(ctx context.Context, bc *stashv1beta1.BackupConfiguration) (int, error) {
	limit := int32(1)
	if bc.Spec.BackupHistoryLimit != nil {
		limit = *bc.Spec.BackupHistoryLimit
	}
	list, err := a.stash.BackupSessions(a.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: stashv1beta1.LabelInvokerName + "=" + bc.Name})
	if err != nil {
		return 0, err
	}
	var done []stashv1beta1.BackupSession
	for _, s := range list.Items {
		switch s.Status.Phase {
		case stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed, stashv1beta1.BackupSessionSkipped:
			if s.Spec.Invoker.Name == bc.Name {
				done = append(done, s)
			}
		}
	}
	sort.Slice(done, func(i, j int) bool {
		ti, tj := done[i].CreationTimestamp, done[j].CreationTimestamp
		if ti.Equal(&tj) {
			return done[i].Name > done[j].Name
		}
		return tj.Before(&ti)
	})
	n := 0
	for i := int(limit); i < len(done); i++ {
		if err := a.stash.BackupSessions(a.cfg.Namespace).Delete(ctx, done[i].Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return n, err
		}
		n++
	}
	return n, nil
}

func (a *Agent) syncRestore(ctx context.Context, nsName string) error {
	t := a.cur()
	obj, ok, _ := t.restores.GetByKey(nsName)
	if !ok {
		return nil
	}
	rs := obj.(*stashv1beta1.RestoreSession)
	if rs.Spec.Target == nil || !a.ours(rs.Spec.Target.Ref) {
		return nil
	}
	if rs.Status.Phase == stashv1beta1.RestoreRunning && !a.runsRestore(rs) {
		// Another agent's, or one this agent ran before it restarted:
		// time its heartbeat (every beat is an update that lands here).
		if !t.sightings.Timing("rs/" + rs.Name) {
			t.queue.Add("orphans")
		}
		return nil
	}
	if restorePhase(rs.Status.Phase) != lifecycle.Pending {
		return nil
	}
	if err := a.access(ctx, rs.Spec.Repository); errors.Is(err, errNoAccess) {
		return waitForAccess(ctx, a, a.restores, "rs/"+nsName, rs.Name, func(s *stashv1beta1.RestoreSession) *[]metav1.Condition { return &s.Status.Conditions }, rs, err)
	}
	release, _ := a.reserve("restore/"+rs.Name, rs.Name)
	if release == nil {
		return nil
	}
	claimed, ok, err := a.restores.Claim(ctx, rs)
	if err != nil || !ok {
		release()
		return err
	}
	a.log.Info("claimed restore", "restore", rs.Name)
	a.goSession(release, func(ctx context.Context) { a.restores.Heartbeat(ctx, claimed.Name) }, func() { a.runRestore(a.workCtx, claimed) })
	return nil
}

// reserve takes key in the running map for session name: release gives
// it back. It returns a nil release while draining, or when another
// session holds key (busy).
func (a *Agent) reserve(key, name string) (release func(), busy bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.draining {
		return nil, false
	}
	if a.running[key] != "" {
		return nil, true
	}
	a.running[key] = name
	return func() {
		a.mu.Lock()
		delete(a.running, key)
		a.mu.Unlock()
	}, false
}

// goSession runs a claimed session's job under the agent's work group,
// with its heartbeat, and releases its reservation when the job returns.
func (a *Agent) goSession(release func(), heartbeat func(context.Context), job func()) {
	a.work.Add(1)
	go func() {
		defer a.work.Done()
		defer release()
		hbCtx, stopHeartbeat := context.WithCancel(a.workCtx)
		defer stopHeartbeat()
		go heartbeat(hbCtx)
		job()
	}()
}

// runsRestore reports whether this agent is running rs right now.
func (a *Agent) runsRestore(rs *stashv1beta1.RestoreSession) bool {
	if rs.Status.ClaimedBy != a.identity {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running["restore/"+rs.Name] == rs.Name
}

// settleOrphanRestore records a restore whose agent stopped as Failed,
// saying what state the database is in. It is never retried on its own:
// a second load into a half-restored database fails on the first table it
// creates, or duplicates rows.
func (a *Agent) settleOrphanRestore(ctx context.Context, rs *stashv1beta1.RestoreSession) error {
	beat := a.restoreKind().State(rs).Beat
	still := func(s *stashv1beta1.RestoreSession) bool {
		return s.Status.ClaimedBy == rs.Status.ClaimedBy && a.restoreKind().State(s).Beat.Equal(beat)
	}
	var msg string
	end := a.clock()
	err := a.restores.Settle(ctx, rs.Name, still, func(s *stashv1beta1.RestoreSession) {
		now := metav1.NewTime(end)
		msg = orphanRestoreMessage(s.Status.ClaimedBy, s.Status.Progress, holdsReadOnly(s.Annotations, s.Annotations[contract.AnnotationRestoreAt] != "" || s.Annotations[contract.AnnotationRestoreToGTID] != ""))
		s.Status.Phase = stashv1beta1.RestoreFailed
		s.Status.Message = msg
		s.Status.CompletionTime = &now
		if s.Status.StartTime != nil {
			s.Status.SessionDuration = now.Sub(s.Status.StartTime.Time).Round(time.Second).String()
		}
		s.Status.Stats = []stashv1beta1.HostRestoreStats{{Hostname: contract.BackupHost, Phase: stashv1beta1.HostFailed, Duration: s.Status.SessionDuration, Error: msg}}
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stashv1beta1.ConditionRestoreCompleted, Status: metav1.ConditionFalse, Reason: "AgentStopped", Message: msg})
	})
	switch {
	case err == nil:
		a.event(ctx, rs, corev1.EventTypeWarning, "RestoreSessionFailed", msg)
		a.log.Error("settled a restore whose agent stopped", "restore", rs.Name, "err", msg)
		a.pushTo(ctx, restoreCommon(rs), metrics.RestoreRegistry(a.restoreResult(rs, false, sessionStart(rs.Status.StartTime, end), end)))
	case errors.Is(err, lifecycle.ErrSettled):
		a.log.Info("the restore's own agent settled it or showed it is alive meanwhile", "restore", rs.Name, "err", err.Error())
	default:
		a.log.Error("could not settle an orphaned restore; trying again", "restore", rs.Name, "err", err.Error())
		return err
	}
	return nil
}

// orphanRestoreMessage says what a restore whose agent stopped left in
// the database. A restore records its position before the first statement
// reaches the database, so one without a position changed nothing. One
// that holds its target read-only may have left it so.
func orphanRestoreMessage(claimedBy string, p *stashv1beta1.Progress, readOnly bool) string {
	ro := ""
	if readOnly {
		ro = "; the restore held the server read-only and may have left it so: if `SELECT @@global.read_only` says 1, run `SET GLOBAL read_only=OFF` once the database is as you want it"
	}
	if p == nil || p.Position == "" {
		return fmt.Sprintf("the agent %s running this restore stopped before the restore applied anything, so the database was not changed; it is not retried on its own: apply it again under a new name to restore%s", claimedBy, ro)
	}
	return fmt.Sprintf("the agent %s running this restore stopped before it finished, so the database is partially restored: at its last update it had applied %s, at %s; it is not retried on its own into a half-restored database: restore again into an empty database%s", claimedBy, session.HumanBytes(p.BytesDone), p.Position, ro)
}
