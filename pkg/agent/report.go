// The reporter: what turns a session's outcome into its status, Events,
// metrics and push, and shows its progress while it runs. The jobs
// (backup, restore) write no status themselves.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/metrics"
	"github.com/kubectl-stash/kubectl-stash/pkg/repository"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// statsEvery bounds how often a repository's size and snapshot count are
// recomputed (a restic run each): a schedule of every few seconds would
// otherwise spend most of its time on statistics.
const statsEvery = time.Minute

func (a *Agent) updateRepositoryStatus(ctx context.Context, repo *stashv1alpha1.Repository, rr *restic.Repo, run *backupRun) error {
	var added uint64
	if run.summary != nil {
		added = run.summary.DataAddedPacked
	}
	st, err := a.nextStats(rr.URL, added, run.removed > 0, func() (uint64, int, error) { return rr.Stats(ctx) })
	if err != nil {
		return err
	}
	size, count := st.size, st.count
	now := metav1.NewTime(a.clock())
	// Integrity is a check's or a verification's verdict, kept as it is:
	// a backup reads nothing back.
	integrity := repo.Status.Integrity
	err = lifecycle.Durable(ctx, a.stash.Repositories(repo.Namespace), repo.Name, func(cur *stashv1alpha1.Repository) {
		integrity = cur.Status.Integrity
		if cur.Status.FirstBackupTime == nil {
			cur.Status.FirstBackupTime = &now
		}
		cur.Status.LastBackupTime = &now
		cur.Status.TotalSize = session.HumanBytes(int64(size))
		cur.Status.SnapshotCount = int64(count)
		cur.Status.SnapshotsRemovedOnLastCleanup = int64(run.removed)
		cur.Status.ObservedGeneration = cur.Generation
	})
	if err != nil {
		return err
	}
	backend, bucket, prefix := repository.Describe(repo.Spec.Backend)
	res := metrics.RepositoryResult{Common: a.common(run.bc), Name: repo.Name, Namespace: repo.Namespace, Backend: backend, Bucket: bucket, Prefix: prefix,
		Integrity: integrity, SizeBytes: int64(size), SnapshotCount: int64(count), SnapshotsCleaned: int64(run.removed)}
	a.metrics.SetRepository(res)
	a.push(ctx, run.bc, metrics.RepositoryRegistry(res))
	return nil
}

// recordIntegrity writes a verification's verdict on a Repository into its
// status and metrics.
func (a *Agent) recordIntegrity(ctx context.Context, bc *stashv1beta1.BackupConfiguration, repo *stashv1alpha1.Repository, ok bool) {
	err := lifecycle.Durable(ctx, a.stash.Repositories(repo.Namespace), repo.Name, func(cur *stashv1alpha1.Repository) {
		cur.Status.Integrity = ptr.To(ok)
	})
	if err != nil {
		a.log.Info("could not write the repository's integrity", "repository", repo.Name, "err", err.Error())
	}
	backend, bucket, prefix := repository.Describe(repo.Spec.Backend)
	res := metrics.RepositoryResult{Common: a.common(bc), Name: repo.Name, Namespace: repo.Namespace, Backend: backend, Bucket: bucket, Prefix: prefix, Integrity: ptr.To(ok)}
	a.push(ctx, bc, metrics.IntegrityRegistry(res))
}

// finishBackup writes the outcome: status, metrics, events, history.
func (a *Agent) finishBackup(ctx context.Context, run *backupRun, err error, log interface {
	Info(string, ...any)
	Error(string, ...any)
}) {
	end := a.clock()
	dur := end.Sub(run.start).Round(time.Second)
	phase := stashv1beta1.BackupSessionSucceeded
	hostPhase := stashv1beta1.HostSucceeded
	msg := ""
	if err != nil {
		phase, hostPhase = stashv1beta1.BackupSessionFailed, stashv1beta1.HostFailed
		msg = err.Error()
		if pastDeadline(err, run.deadline, end) {
			msg = fmt.Sprintf("the session passed its time limit, %s, and was stopped; no snapshot was saved (%v)", run.limit.raise, err)
			run.cond(stashv1beta1.ConditionDeadlineExceeded, true, "DeadlineExceeded", msg)
		}
	} else {
		msg = savedMessage(run.summary, dur)
	}
	stats := a.hostStats(run.summary, hostPhase, dur)
	if err != nil {
		stats.Error = msg
	}
	ref := run.bc.Spec.Target.Ref
	uerr := a.backups.Finish(ctx, run.bs.Name, func(s *stashv1beta1.BackupSession) {
		now := metav1.NewTime(end)
		s.Status.Phase = phase
		s.Status.SessionDuration = dur.String()
		s.Status.CompletionTime = &now
		s.Status.Message = msg
		s.Status.Targets = []stashv1beta1.BackupTargetStatus{{
			Ref: ref, TotalHosts: ptr.To[int32](1), Phase: stashv1beta1.TargetPhase(hostPhase),
			PreBackupActions: run.pre, PostBackupActions: run.post, Stats: []stashv1beta1.HostBackupStats{stats},
		}}
		for _, c := range run.conds {
			meta.SetStatusCondition(&s.Status.Conditions, c)
		}
		if s.Status.Progress != nil {
			s.Status.Progress.UpdateTime = &now
		}
	})
	if errors.Is(uerr, lifecycle.ErrSettled) {
		// The new leader took it for orphaned and settled it (and retried it
		// if it found no snapshot); this run's outcome stays in the log.
		log.Info("another agent settled this session first; its outcome stands", "outcome", msg, "err", uerr.Error())
		return
	}
	if uerr != nil {
		log.Error("could not write the session's final status", "err", uerr.Error())
	}
	if err == nil {
		_ = a.updateConfigStatus(ctx, run.bc.Name, func(c *stashv1beta1.BackupConfiguration) {
			c.Status.LastSuccessfulSession = run.bs.Name
			c.Status.LastSuccessTime = &metav1.Time{Time: end}
		})
		a.event(ctx, run.bs, corev1.EventTypeNormal, "BackupSessionSucceeded", msg)
		log.Info("backup succeeded", "duration", dur.String())
	} else {
		a.event(ctx, run.bs, corev1.EventTypeWarning, "BackupSessionFailed", msg)
		log.Error("backup failed", "err", msg)
		a.scheduleRetry(ctx, run.bc, run.bs, err)
	}
	res := a.backupResult(run.bc, err == nil, run.start, end, run.summary)
	a.metrics.SetBackup(res)
	// Pushed before the config is free: a next session's result must not
	// be overwritten by this one's arriving late.
	a.push(ctx, run.bc, metrics.BackupRegistry(res))
	run.reported = true
}

// backupResult is the metrics of a backup session of bc that ran from
// start to end; sum is restic's summary, nil when nothing was saved.
func (a *Agent) backupResult(bc *stashv1beta1.BackupConfiguration, ok bool, start, end time.Time, sum *restic.Summary) metrics.BackupResult {
	var lastSuccess time.Time
	if ok {
		lastSuccess = end
	} else if cur, found := a.config(a.cfg.Namespace + "/" + bc.Name); found && cur.Status.LastSuccessTime != nil {
		lastSuccess = cur.Status.LastSuccessTime.Time
	}
	ref := bc.Spec.Target.Ref
	res := metrics.BackupResult{
		Common: a.common(bc), Target: metrics.Target{Kind: ref.Kind, Group: appcatalog.GroupVersion.Group, Name: ref.Name},
		Hostname: contract.BackupHost, Success: ok, Start: start, End: end,
		SessionDuration: end.Sub(start), HostDuration: end.Sub(start), LastSuccess: lastSuccess,
	}
	if sum != nil {
		res.DataSizeBytes, res.DataUploadedBytes = int64(sum.TotalBytesProcessed), int64(sum.DataAddedPacked)
		res.ProcessingTime = time.Duration(sum.TotalDuration * float64(time.Second))
		res.FilesTotal, res.FilesNew, res.FilesModified, res.FilesUnmodified = int64(sum.TotalFilesProcessed), int64(sum.FilesNew), int64(sum.FilesChanged), int64(sum.FilesUnmodified)
	}
	return res
}

// pushStart publishes that a session of the invoker c started, so one that
// runs too long alerts (StashBackupSessionRunningTooLong and the restore's).
func (a *Agent) pushStart(ctx context.Context, kind string, c metrics.Common, start time.Time) {
	if a.cfg.Pushgateway == "" {
		return
	}
	// Short: the session waits for it, and must not wait long on a
	// Pushgateway that does not answer.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a.pushTo(ctx, c, metrics.StartRegistry(kind, c, start))
}

// pushTo sends g to the Pushgateway under c's job; failures are logged.
func (a *Agent) pushTo(ctx context.Context, c metrics.Common, g prometheus.Gatherer) {
	if a.cfg.Pushgateway == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p := &metrics.Pusher{URL: a.cfg.Pushgateway, Job: metrics.JobName(c), Grouping: metrics.Grouping(contract.BackupHost)}
	if err := p.Push(ctx, g); err != nil {
		a.log.Warn("could not push metrics", "err", err)
	}
}

// afterBackup is a session's bookkeeping once the config is free for its
// next session (a slot that fires meanwhile is not Skipped as "still
// running"): the history trim, the Repository's status after a saved
// snapshot, and the repository's files. Bounded even when ctx has ended.
func (a *Agent) afterBackup(ctx context.Context, run *backupRun) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	log := a.log.With("session", run.bs.Name, "config", run.bc.Name)
	if run.cleanup != nil {
		defer run.cleanup()
	}
	if run.reported {
		if n, err := a.trimHistory(ctx, run.bc); err != nil {
			log.Error("could not trim session history", "err", err.Error())
		} else if n > 0 {
			log.Info("trimmed session history", "deleted", n)
		}
	}
	if run.summary != nil {
		a.backupDone(run.bc.Name) // the archive's window may open or move
		a.countForVerification(ctx, run.bc, run.summary.SnapshotID)
	}
	if run.summary != nil && run.rr != nil {
		if err := a.updateRepositoryStatus(ctx, run.repo, run.rr, run); err != nil {
			log.Info("could not update the repository status", "err", err.Error())
		}
	}
}

func savedMessage(s *restic.Summary, dur time.Duration) string {
	return fmt.Sprintf("snapshot %s saved (%s processed, %s uploaded) in %s", shortID(s.SnapshotID), session.HumanBytes(int64(s.TotalBytesProcessed)), session.HumanBytes(int64(s.DataAddedPacked)), dur)
}

// hostStats is the host's entry in a session's status; s may be nil.
func (a *Agent) hostStats(s *restic.Summary, phase stashv1beta1.HostPhase, dur time.Duration) stashv1beta1.HostBackupStats {
	stats := stashv1beta1.HostBackupStats{Hostname: contract.BackupHost, Phase: phase, Duration: dur.String()}
	if s != nil {
		total := int64(s.TotalFilesProcessed)
		nw, mod, un := int64(s.FilesNew), int64(s.FilesChanged), int64(s.FilesUnmodified)
		stats.Snapshots = []stashv1beta1.SnapshotStats{{
			Name: s.SnapshotID, Path: contract.DumpFile(a.cfg.AppBinding),
			TotalSize: session.HumanBytes(int64(s.TotalBytesProcessed)), Uploaded: session.HumanBytes(int64(s.DataAddedPacked)),
			ProcessingTime: (time.Duration(s.TotalDuration * float64(time.Second))).Round(time.Millisecond).String(),
			FileStats:      stashv1beta1.FileStats{TotalFiles: &total, NewFiles: &nw, ModifiedFiles: &mod, UnmodifiedFiles: &un},
		}}
	}
	return stats
}

func (a *Agent) common(bc *stashv1beta1.BackupConfiguration) metrics.Common {
	return metrics.Common{InvokerKind: stashv1beta1.KindBackupConfiguration, InvokerName: bc.Name, Namespace: bc.Namespace, Driver: string(stashv1beta1.DriverRestic), Repository: bc.Spec.Repository.Name}
}

// progressWriter returns a restic progress callback and its stop. The
// callback only keeps the newest progress; one goroutine writes it to the
// session's status at most every ProgressEvery. restic's output is read
// on the callback's goroutine, so a slow or throttled API server must not
// hold it: restic would block writing, or, once it exited, Wait would give
// up on its output after WaitDelay and fail a backup whose snapshot was
// saved (seen with 100 agents in one slot). stop waits for the writer.
func (a *Agent) progressWriter(ctx context.Context, session string) (update func(restic.Status), stop func()) {
	var mu sync.Mutex
	var latest *restic.Status
	wake := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			mu.Lock()
			st := latest
			latest = nil
			mu.Unlock()
			if st == nil {
				continue
			}
			now := a.clock()
			rate := int64(0)
			if st.SecondsElapsed > 0 {
				rate = int64(float64(st.BytesDone) / st.SecondsElapsed)
			}
			p := progressPatch(int64(st.BytesDone), int64(st.TotalBytes), rate, now)
			if _, err := a.stash.BackupSessions(a.cfg.Namespace).Patch(ctx, session, types.MergePatchType, p, "status"); err != nil && ctx.Err() == nil {
				a.log.Warn("could not write progress", "session", session, "err", err)
			}
			select { // at most one write per ProgressEvery
			case <-ctx.Done():
				return
			case <-time.After(a.cfg.ProgressEvery):
			}
		}
	}()
	update = func(st restic.Status) {
		mu.Lock()
		latest = &st
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	stop = func() {
		cancel()
		<-done
	}
	return update, stop
}

// push sends metrics to the Pushgateway, when one is configured. A failed
// push is logged, never fatal: the backup itself is what matters.
func (a *Agent) push(ctx context.Context, bc *stashv1beta1.BackupConfiguration, g prometheus.Gatherer) {
	a.pushTo(ctx, a.common(bc), g)
}

// progressPatch is the merge patch that writes a session's progress.
func progressPatch(done, total, rate int64, now time.Time) []byte {
	return fmt.Appendf(nil, `{"status":{"progress":{"bytesDone":%d,"bytesTotal":%d,"bytesPerSecond":%d,"updateTime":%q}}}`,
		done, total, rate, now.UTC().Format(time.RFC3339))
}

// replayEnd says where a replay stopped.
func replayEnd(p *stashv1beta1.PITRRestoreStatus) string {
	end := "the end of the archive"
	if p.Target != contract.Latest {
		end = p.Target
	}
	if p.LastEventTime != nil {
		end += fmt.Sprintf(" (last transaction %s at %s)", p.LastGTID, p.LastEventTime.UTC().Format(time.RFC3339))
	}
	return end
}

func (a *Agent) finishRestore(ctx context.Context, run *restoreRun, err error) {
	end := a.clock()
	dur := end.Sub(run.start).Round(time.Second)
	phase, hostPhase := stashv1beta1.RestoreSucceeded, stashv1beta1.HostSucceeded
	var msg string
	if err != nil {
		phase, hostPhase = stashv1beta1.RestoreFailed, stashv1beta1.HostFailed
		msg = err.Error()
		if pastDeadline(err, run.deadline, end) {
			msg = fmt.Sprintf("the restore passed its time limit, %s, and was stopped; %s", run.limit.raise, map[bool]string{true: "the database is partially restored", false: "the database was not changed"}[run.touched.Load()])
		}
	} else {
		msg = fmt.Sprintf("snapshot %s restored (%s) in %s", shortID(run.snapshot), session.HumanBytes(run.written.Load()), dur)
		if p := run.pitr; p != nil {
			msg = fmt.Sprintf("snapshot %s restored (%s), then %d binlog transactions replayed from %s to %s, in %s", shortID(run.snapshot), session.HumanBytes(run.written.Load()),
				p.Transactions, p.StartPosition, replayEnd(p), dur)
			if len(p.GapsCrossed) > 0 {
				msg += fmt.Sprintf("; the replay crossed %d gap(s) in the archive, as allowed, and their events are missing (%s)", len(p.GapsCrossed), strings.Join(p.GapsCrossed, "; "))
			}
		}
	}
	if rc := run.restored; err == nil && rc != nil {
		if rc.Selection != "" {
			msg += fmt.Sprintf("; restored %d of its %d tables, views and sequences (%s) into databases %s", rc.Objects, rc.Available, rc.Selection, strings.Join(rc.Databases, ", "))
		}
		if rc.Accounts {
			msg += "; the snapshot's accounts and grants replaced the target's"
		}
		if len(rc.Warnings) > 0 {
			msg += "; warnings: " + strings.Join(rc.Warnings[:min(3, len(rc.Warnings))], "; ")
		}
		if run.credentials != "" {
			msg += "; " + run.credentials
		}
	}
	stats := stashv1beta1.HostRestoreStats{Hostname: contract.BackupHost, Phase: hostPhase, Duration: dur.String()}
	if err != nil {
		stats.Error = msg
	}
	uerr := a.restores.Finish(ctx, run.rs.Name, func(s *stashv1beta1.RestoreSession) {
		now := metav1.NewTime(end)
		s.Status.Phase = phase
		s.Status.SessionDuration = dur.String()
		s.Status.CompletionTime = &now
		s.Status.Message = msg
		s.Status.Stats = []stashv1beta1.HostRestoreStats{stats}
		s.Status.Progress = &stashv1beta1.Progress{BytesDone: run.written.Load(), UpdateTime: &now, Position: run.where()}
		if run.snapshot != "" {
			s.Status.Snapshot = run.snapshot
		}
		s.Status.Restored = run.restored
		if run.restored != nil && run.restored.Accounts {
			c := metav1.Condition{Type: stashv1beta1.ConditionCredentialsValid, Status: metav1.ConditionTrue, Reason: "AccountsRestored",
				Message: "the snapshot's accounts replaced the target's, and the AppBinding's Secret still logs in"}
			switch {
			case err != nil:
				// Not checked: the load stopped after the account tables'
				// section began, and before the dump's FLUSH PRIVILEGES.
				c.Status, c.Reason = metav1.ConditionUnknown, "RestoreIncomplete"
				c.Message = "the restore failed after it began loading the snapshot's accounts into the target's mysql schema: the account tables may be partly the snapshot's, and take effect at the next FLUSH PRIVILEGES or server restart; restore again, or check that the AppBinding's Secret still logs in"
			case run.credentials != "":
				c.Status, c.Reason, c.Message = metav1.ConditionFalse, "SecretOutdated", run.credentials
			}
			meta.SetStatusCondition(&s.Status.Conditions, c)
		}
		if run.pitr != nil {
			s.Status.PointInTime = run.pitr
			c := metav1.Condition{Type: stashv1beta1.ConditionPointInTimeRestored, Status: metav1.ConditionTrue, Reason: "Replayed",
				Message: fmt.Sprintf("%d transactions replayed from %s to %s", run.pitr.Transactions, run.pitr.StartPosition, replayEnd(run.pitr))}
			if len(run.pitr.GapsCrossed) > 0 {
				c.Reason, c.Message = "ReplayedAcrossGap", msg
			}
			if err != nil {
				c.Status, c.Reason, c.Message = metav1.ConditionFalse, "ReplayFailed", msg
			}
			meta.SetStatusCondition(&s.Status.Conditions, c)
		}
		st := metav1.ConditionTrue
		reason := "Succeeded"
		if err != nil {
			st, reason = metav1.ConditionFalse, "Failed"
		}
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stashv1beta1.ConditionRestoreCompleted, Status: st, Reason: reason, Message: msg})
		for _, c := range run.conds {
			meta.SetStatusCondition(&s.Status.Conditions, c)
		}
	})
	if errors.Is(uerr, lifecycle.ErrSettled) {
		// Taken for orphaned by a new leader, which wrote its own verdict.
		a.log.Info("another agent settled this restore first; its outcome stands", "restore", run.rs.Name, "outcome", msg, "err", uerr.Error())
		return
	}
	if uerr != nil {
		a.log.Error("could not write the restore's final status", "restore", run.rs.Name, "err", uerr.Error())
	}
	if err == nil {
		a.event(ctx, run.rs, corev1.EventTypeNormal, "RestoreSessionSucceeded", msg)
		a.log.Info("restore succeeded", "restore", run.rs.Name, "bytes", run.written.Load(), "duration", dur.String())
	} else {
		a.event(ctx, run.rs, corev1.EventTypeWarning, "RestoreSessionFailed", msg)
		a.log.Error("restore failed", "restore", run.rs.Name, "err", msg)
	}
	res := a.restoreResult(run.rs, err == nil, run.start, end)
	a.metrics.SetRestore(res)
	a.pushTo(ctx, res.Common, metrics.RestoreRegistry(res))
}

// restoreCommon is the metric labels of a RestoreSession.
func restoreCommon(rs *stashv1beta1.RestoreSession) metrics.Common {
	return metrics.Common{InvokerKind: stashv1beta1.KindRestoreSession, InvokerName: rs.Name, Namespace: rs.Namespace, Driver: string(stashv1beta1.DriverRestic), Repository: rs.Spec.Repository.Name}
}

// restoreResult is the metrics of a restore that ran from start to end.
func (a *Agent) restoreResult(rs *stashv1beta1.RestoreSession, ok bool, start, end time.Time) metrics.RestoreResult {
	return metrics.RestoreResult{Common: restoreCommon(rs), Target: metrics.Target{Kind: appcatalog.KindAppBinding, Group: appcatalog.GroupVersion.Group, Name: a.cfg.AppBinding},
		Hostname: contract.BackupHost, Success: ok, SessionDuration: end.Sub(start), HostDuration: end.Sub(start), Start: start, End: end}
}

// restoreReport is how the restore job shows what it does while it runs.
type restoreReport interface {
	// snapshot names the snapshot being restored.
	snapshot(ctx context.Context, id string)
	// starting records, durably, that statements are about to reach the
	// database; an error means none must be sent.
	starting(ctx context.Context, total int64) error
	// watch reports progress until stop is called.
	watch(ctx context.Context, run *restoreRun, total int64) (stop func())
}

// restoreStatus reports into the RestoreSession's status.
type restoreStatus struct {
	a    *Agent
	name string
}

func (r *restoreStatus) snapshot(ctx context.Context, id string) {
	_ = r.a.updateRestoreStatus(ctx, r.name, func(s *stashv1beta1.RestoreSession) { s.Status.Snapshot = id })
}

func (r *restoreStatus) starting(ctx context.Context, total int64) error {
	return lifecycle.Durable(ctx, r.a.stash.RestoreSessions(r.a.cfg.Namespace), r.name, func(s *stashv1beta1.RestoreSession) {
		s.Status.Progress = &stashv1beta1.Progress{BytesTotal: total, Position: startPosition, UpdateTime: &metav1.Time{Time: r.a.clock()}}
	})
}

// watch writes the bytes restored and the position every ProgressEvery
// until stopped.
func (r *restoreStatus) watch(ctx context.Context, run *restoreRun, total int64) (stop func()) {
	a := r.a
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(a.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				n := run.written.Load()
				secs := now.Sub(run.start).Seconds()
				rate := int64(0)
				if secs > 0 {
					rate = int64(float64(n) / secs)
				}
				p := restoreProgressPatch(n, total, rate, now, run.where())
				if _, err := a.stash.RestoreSessions(a.cfg.Namespace).Patch(ctx, run.rs.Name, types.MergePatchType, p, "status"); err != nil {
					a.log.Warn("could not write restore progress", "restore", run.rs.Name, "err", err)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (a *Agent) updateRestoreStatus(ctx context.Context, name string, mutate func(*stashv1beta1.RestoreSession)) error {
	return lifecycle.UpdateStatus(ctx, a.stash.RestoreSessions(a.cfg.Namespace), name, mutate)
}

// restoreProgressPatch is the merge patch that writes a restore's progress.
func restoreProgressPatch(done, total, rate int64, now time.Time, position string) []byte {
	b, _ := json.Marshal(map[string]any{"status": map[string]any{"progress": stashv1beta1.Progress{
		BytesDone: done, BytesTotal: total, BytesPerSecond: rate, UpdateTime: &metav1.Time{Time: now.UTC()}, Position: position,
	}}})
	return b
}
