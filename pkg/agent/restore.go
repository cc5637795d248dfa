package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/metrics"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
	"github.com/kubectl-stash/kubectl-stash/pkg/sqlload"
)

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
	key := "restore/" + rs.Name
	a.mu.Lock()
	if a.draining || a.running[key] != "" {
		a.mu.Unlock()
		return nil
	}
	a.running[key] = rs.Name
	a.mu.Unlock()
	release := func() {
		a.mu.Lock()
		delete(a.running, key)
		a.mu.Unlock()
	}
	claimed, ok, err := a.restores.Claim(ctx, rs)
	if err != nil || !ok {
		release()
		return err
	}
	a.log.Info("claimed restore", "restore", rs.Name)
	a.work.Add(1)
	go func() {
		defer a.work.Done()
		defer release()
		hbCtx, stopHeartbeat := context.WithCancel(a.workCtx)
		defer stopHeartbeat()
		go a.restores.Heartbeat(hbCtx, claimed.Name)
		a.runRestore(a.workCtx, claimed)
	}()
	return nil
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
	err := a.restores.Settle(ctx, rs.Name, still, func(s *stashv1beta1.RestoreSession) {
		now := metav1.NewTime(a.clock())
		msg = orphanRestoreMessage(s.Status.ClaimedBy, s.Status.Progress)
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
// reaches the database, so one without a position changed nothing.
func orphanRestoreMessage(claimedBy string, p *stashv1beta1.Progress) string {
	if p == nil || p.Position == "" {
		return fmt.Sprintf("the agent %s running this restore stopped before the restore applied anything, so the database was not changed; it is not retried on its own: apply it again under a new name to restore", claimedBy)
	}
	return fmt.Sprintf("the agent %s running this restore stopped before it finished, so the database is partially restored: at its last update it had applied %s, at %s; it is not retried on its own into a half-restored database: restore again into an empty database", claimedBy, session.HumanBytes(p.BytesDone), p.Position)
}

// restoreRun is what one restore learned.
type restoreRun struct {
	rs       *stashv1beta1.RestoreSession
	start    time.Time
	snapshot string
	written  atomic.Int64
	// touched is set once the first byte reached the database.
	touched atomic.Bool
	// limit and deadline bound the session; zero when it has none.
	limit    sessionLimit
	deadline time.Time
	// host is the database's host, for hooks; set once they were found
	// runnable. conds are the hooks' conditions.
	host  string
	conds []metav1.Condition
	// loader is loading the dump; nil until it starts.
	loader atomic.Pointer[sqlload.Loader]
}

// where is the load's position, "" before it started.
func (r *restoreRun) where() string {
	if l := r.loader.Load(); l != nil {
		return positionText(l.Position())
	}
	return ""
}

// runRestore is the whole restore data path, top to bottom.
func (a *Agent) runRestore(ctx context.Context, rs *stashv1beta1.RestoreSession) {
	run := &restoreRun{rs: rs, start: a.clock()}
	limit, err := a.sessionLimit(rs.Spec.TimeOut, stashv1beta1.KindRestoreSession, rs.Name)
	if err != nil {
		a.finishRestore(context.WithoutCancel(ctx), run, err)
		return
	}
	if limit.d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit.d)
		defer cancel()
		run.limit, run.deadline = limit, run.start.Add(limit.d)
		_ = a.updateRestoreStatus(ctx, rs.Name, func(s *stashv1beta1.RestoreSession) {
			s.Status.SessionDeadline = &metav1.Time{Time: run.deadline}
		})
	}
	err = a.restore(ctx, run)
	if run.host != "" {
		// A restore is never retried: every failure is the final one.
		err = a.postHook(context.WithoutCancel(ctx), postRestoreHook(rs), run.host, err, true, &run.conds)
	}
	if err != nil && errors.Is(context.Cause(ctx), ErrShutdown) {
		state := "the database was not changed"
		if run.touched.Load() {
			state = "the database is partially restored: restore again into an empty database"
		}
		err = fmt.Errorf("%w (%s) before the restore finished; %s: %w", ErrShutdown, a.cfg.ShutdownGrace, state, err)
	}
	a.finishRestore(context.WithoutCancel(ctx), run, err)
}

func (a *Agent) restore(ctx context.Context, run *restoreRun) error {
	rs := run.rs
	ab, conn, err := a.connection(ctx)
	if err != nil {
		return err
	}
	taskName, step, err := resolveTask(rs.Spec.Task, ab, true)
	if err != nil {
		return err
	}
	if err := a.checkHooks(preRestoreHook(rs), postRestoreHook(rs)); err != nil {
		return fmt.Errorf("%w (the database was not changed)", err)
	}
	repo, rr, cleanupRepo, err := a.openRepo(ctx, rs.Spec.Repository, step.EnableCache)
	if err != nil {
		return err
	}
	defer cleanupRepo()
	// Which snapshot, and which file in it. Listing the snapshots and
	// starting restic dump each cost a key derivation (about a second), so
	// when the rule names a snapshot ID its dump starts now, held until the
	// listing confirms the snapshot and names the file; the database is
	// made ready meanwhile.
	want := wantedSnapshot(rs, step)
	var pre *prefetch
	if want.isID() {
		pre = startPrefetch(ctx, rr, want.snapshot)
		defer pre.stop()
	}
	prepCtx, cancelPrep := context.WithCancelCause(ctx)
	defer cancelPrep(nil)
	type picked struct {
		snap restic.Snapshot
		err  error
	}
	pickc := make(chan picked, 1)
	go func() {
		snap, err := a.pickSnapshot(ctx, rr, rs, want)
		if err != nil {
			cancelPrep(err) // no wait for the database when there is nothing to restore
		}
		pickc <- picked{snap, err}
	}()

	dbFiles, err := conn.WriteFiles(a.cfg.ScratchDir)
	if err != nil {
		<-pickc
		return err
	}
	defer os.RemoveAll(dbFiles.Dir)
	client, err := database.FindClient()
	if err == nil {
		a.log.Info("waiting for the database", "restore", rs.Name, "host", conn.Host, "port", conn.Port, "task", taskName)
		if werr := client.WaitReady(prepCtx, dbFiles, a.childEnv(), step.WaitTimeout, 2*time.Second); werr != nil {
			err = dbError(ab, werr)
		}
	}
	p := <-pickc
	if p.err != nil {
		return p.err
	}
	if err != nil {
		return err
	}
	snap := p.snap
	run.snapshot = snap.ID
	file := contract.DumpFile(a.cfg.AppBinding)
	if len(snap.Paths) > 0 {
		file = snap.Paths[0]
	}
	var total int64
	if snap.Summary != nil {
		total = int64(snap.Summary.TotalBytesProcessed)
	}
	_ = a.updateRestoreStatus(ctx, rs.Name, func(s *stashv1beta1.RestoreSession) { s.Status.Snapshot = snap.ID })

	run.host = conn.Host
	if c, err := a.runHook(ctx, preRestoreHook(rs), conn.Host); c != nil {
		meta.SetStatusCondition(&run.conds, *c)
		if err != nil {
			return fmt.Errorf("%w; the database was not changed", err)
		}
	}
	// Stream restic dump into mysql, each table over the next free
	// connection: no shell, and no copy of the dump beyond a bounded spool.
	// The position is recorded first: should this agent die, whoever
	// settles the restore can tell a database it changed from one it did not.
	if err := lifecycle.Durable(ctx, a.stash.RestoreSessions(a.cfg.Namespace), rs.Name, func(s *stashv1beta1.RestoreSession) {
		s.Status.Progress = &stashv1beta1.Progress{BytesTotal: total, Position: startPosition, UpdateTime: &metav1.Time{Time: a.clock()}}
	}); err != nil {
		return fmt.Errorf("could not record the restore's start in its status, so nothing was applied and the database was not changed: %w", err)
	}
	argv := client.LoadArgv(dbFiles, step.Args)
	stop := a.restoreProgress(ctx, run, total)
	loader, err := sqlload.Start(ctx, sqlload.Options{
		Argv:        argv,
		Env:         append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dbFiles.Dir}, a.childEnv()...), dbFiles.Env...),
		Connections: a.cfg.RestoreConnections,
		SpoolDir:    dbFiles.Dir,
		SpoolLimit:  spoolLimit(dbFiles.Dir, a.cfg.RestoreSpool),
		Loaded: func(n int) {
			run.touched.Store(true)
			run.written.Add(int64(n))
		},
	})
	if err != nil {
		stop()
		return fmt.Errorf("start mysql: %w", err)
	}
	run.loader.Store(loader)
	into := io.Writer(loader)
	var dumpErr error
	if pre.matches(snap.ID) {
		var wrote bool
		if wrote, dumpErr = pre.use(file, into); dumpErr != nil && !wrote {
			// It failed before a byte reached the database: whatever the
			// cause, the plain dump says it again, or succeeds.
			a.log.Info("prefetched dump failed before any data; dumping again", "restore", rs.Name, "error", dumpErr.Error())
			dumpErr = rr.Dump(ctx, snap.ID, file, into)
		}
	} else {
		pre.stop()
		dumpErr = rr.Dump(ctx, snap.ID, file, into)
	}
	var loadErr error
	if dumpErr == nil {
		loadErr = loader.Close()
	} else {
		loader.Abort(dumpErr)
		if le := (*sqlload.Error)(nil); errors.As(dumpErr, &le) {
			// restic stopped because mysql did: mysql's error is the cause.
			loadErr, dumpErr = le, nil
		}
	}
	stop()
	st := loader.Stats()
	a.log.Info("restore loaded", "restore", rs.Name, "connections", a.cfg.RestoreConnections, "sections", st.Sections, "tableSections", st.TableSections, "spoolPeak", st.SpoolPeak)
	if loadErr != nil {
		stderr := ""
		if le := (*sqlload.Error)(nil); errors.As(loadErr, &le) {
			stderr = le.Stderr
		}
		return sqlError(ab, stderr, loadErr, run.touched.Load())
	}
	if dumpErr != nil {
		if errors.Is(dumpErr, restic.ErrStalled) || errors.Is(dumpErr, restic.ErrBackend) {
			// restic was cut short and may have left its lock behind.
			a.markLocked(rr.URL, true)
		}
		state := "the database was not changed"
		if run.touched.Load() {
			state = "part of the dump was applied, so the database is partially restored: restore again into an empty database"
		}
		return fmt.Errorf("reading snapshot %s from Repository %s failed (%s): %w", shortID(snap.ID), repo.Name, state, repoErr(repo, dumpErr))
	}
	return nil
}

// snapshotWant is what a restore asks for: a snapshot ID or "latest", and
// whose backups to look at.
type snapshotWant struct {
	snapshot, host, at string
}

var hexID = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

// isID says the rule names one snapshot by an ID restic resolves on its own.
func (w snapshotWant) isID() bool { return w.at == "" && hexID.MatchString(w.snapshot) }

func wantedSnapshot(rs *stashv1beta1.RestoreSession, step StepOptions) snapshotWant {
	want, host := contract.Latest, ""
	rules := rs.Spec.Rules
	if rs.Spec.Target != nil && len(rs.Spec.Target.Rules) > 0 {
		rules = rs.Spec.Target.Rules
	}
	if len(rules) > 0 {
		if len(rules[0].Snapshots) > 0 && rules[0].Snapshots[0] != "" {
			want = rules[0].Snapshots[0]
		}
		host = rules[0].SourceHost
	}
	if step.Snapshot != "" {
		want = step.Snapshot
	}
	if step.SourceHost != "" {
		host = step.SourceHost
	}
	at := rs.Annotations[contract.AnnotationRestoreAt]
	// "latest" and a time mean the newest backup of this product's host
	// unless a sourceHost says otherwise; an explicit ID is looked up anywhere.
	if host == "" && (want == contract.Latest || at != "") {
		host = contract.BackupHost
	}
	return snapshotWant{snapshot: want, host: host, at: at}
}

// pickSnapshot resolves the rule's snapshot (an ID, "latest", or the newest
// at or before the restore-at annotation) among the source host's snapshots.
func (a *Agent) pickSnapshot(ctx context.Context, rr *restic.Repo, rs *stashv1beta1.RestoreSession, w snapshotWant) (restic.Snapshot, error) {
	want, host := w.snapshot, w.host
	snaps, err := rr.Snapshots(ctx, host, nil)
	if err != nil {
		return restic.Snapshot{}, fmt.Errorf("list snapshots of Repository %s (the database was not changed): %w", rs.Spec.Repository.Name, err)
	}
	var at time.Time
	if w.at != "" {
		t, err := time.Parse(time.RFC3339, w.at)
		if err != nil {
			return restic.Snapshot{}, fmt.Errorf("%w: annotation %s=%q is not an RFC 3339 time", ErrInvalid, contract.AnnotationRestoreAt, w.at)
		}
		at = t
	}
	if s, ok := contract.FindSnapshot(snaps, want, at); ok {
		return s, nil
	}
	switch {
	case w.at != "":
		return restic.Snapshot{}, fmt.Errorf("%w: Repository %s has no snapshot taken at or before %s (the database was not changed): list them with `kubectl stash snapshots %s`", ErrInvalid, rs.Spec.Repository.Name, w.at, rs.Spec.Repository.Name)
	case want == contract.Latest:
		return restic.Snapshot{}, fmt.Errorf("%w: Repository %s has no snapshots%s (the database was not changed)", ErrInvalid, rs.Spec.Repository.Name, hostNote(host))
	}
	return restic.Snapshot{}, fmt.Errorf("%w: snapshot %q not found in Repository %s%s (the database was not changed): list them with `kubectl stash snapshots %s`", ErrInvalid, want, rs.Spec.Repository.Name, hostNote(host), rs.Spec.Repository.Name)
}

func hostNote(host string) string {
	if host == "" {
		return ""
	}
	return " for host " + host
}

var sqlErrLine = regexp.MustCompile(`ERROR (\d+) \(([0-9A-Za-z]+)\)(?: at line (\d+))?:?\s*(.*)`)

// Client error codes of a server that was never reached or went away.
var connErrors = map[string]bool{"2002": true, "2003": true, "2005": true, "2006": true, "2013": true}

// sqlError turns mysql's stderr into a message with the statement's line
// number in the dump and no data. Only a refused login (1045) is blamed on
// the credentials: 1044 and 1227 ("you need the SUPER privilege", a dump's
// DEFINER) are statements the user may not run, and say so.
func sqlError(ab *appcatalog.AppBinding, stderr string, err error, touched bool) error {
	m := sqlErrLine.FindStringSubmatch(stderr)
	code := ""
	if m != nil {
		code = m[1]
	}
	kind := database.Classify(stderr)
	switch {
	case code == "1045" || code == "" && errors.Is(kind, database.ErrAccessDenied):
		return dbError(ab, fmt.Errorf("%w: %s", database.ErrAccessDenied, elide(firstLine(stderr))))
	case code == "2026" || code == "" && errors.Is(kind, database.ErrTLS):
		return dbError(ab, fmt.Errorf("%w: %s", database.ErrTLS, elide(firstLine(stderr))))
	case !touched && (connErrors[code] || code == "" && errors.Is(kind, database.ErrUnreachable)):
		return dbError(ab, fmt.Errorf("%w: %s", database.ErrUnreachable, elide(firstLine(stderr))))
	}
	state := "the database was not changed"
	if touched {
		state = "statements before it were applied, so the database is partially restored: fix the cause, then restore again into an empty database"
	}
	if m != nil {
		text := m[4]
		if i := strings.Index(text, " near "); i >= 0 {
			text = text[:i]
		}
		where := ""
		if m[3] != "" {
			where = " at line " + m[3] + " of the dump"
		}
		return fmt.Errorf("SQL error %s (%s)%s: %s; %s", m[1], m[2], where, strings.TrimSpace(elide(text)), state)
	}
	line := elide(firstLine(stderr))
	if line == "" {
		line = "it wrote no error"
	}
	return fmt.Errorf("mysql failed (%v): %s; %s", err, line, state)
}

// elide cuts a server message at its first quote: what follows may be data
// from the dump (a duplicate key's value), and the server neither escapes
// quotes inside it nor keeps it on one line.
func elide(s string) string {
	if i := strings.IndexAny(s, "'\""); i >= 0 {
		return strings.TrimRight(s[:i], " ") + " '…'"
	}
	return s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// spoolLimit keeps the restore spool within half the scratch space free.
func spoolLimit(dir string, want int64) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		if free := int64(st.Bavail) * int64(st.Bsize) / 2; free < want {
			return max(free, 1<<20)
		}
	}
	return want
}

// restoreProgress writes bytes restored every ProgressEvery until stopped.
func (a *Agent) restoreProgress(ctx context.Context, run *restoreRun, total int64) (stop func()) {
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
	common := metrics.Common{InvokerKind: stashv1beta1.KindRestoreSession, InvokerName: run.rs.Name, Namespace: run.rs.Namespace, Driver: string(stashv1beta1.DriverRestic), Repository: run.rs.Spec.Repository.Name}
	res := metrics.RestoreResult{Common: common, Target: metrics.Target{Kind: appcatalog.KindAppBinding, Group: appcatalog.GroupVersion.Group, Name: a.cfg.AppBinding},
		Hostname: contract.BackupHost, Success: err == nil, SessionDuration: end.Sub(run.start), HostDuration: end.Sub(run.start)}
	a.metrics.SetRestore(res)
	if a.cfg.Pushgateway != "" {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		p := &metrics.Pusher{URL: a.cfg.Pushgateway, Job: metrics.JobName(common), Grouping: metrics.Grouping(contract.BackupHost)}
		if err := p.Push(pctx, metrics.RestoreRegistry(res)); err != nil {
			a.log.Warn("could not push metrics", "err", err)
		}
	}
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
