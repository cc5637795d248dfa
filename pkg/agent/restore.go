package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	corev1 "k8s.io/api/core/v1"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumpfilter"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/sqlload"
)

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
	// report receives what the job must show while it runs.
	report restoreReport
	// loader is loading the dump; nil until it starts.
	loader atomic.Pointer[sqlload.Loader]
	// pitr is the binlog replay of a restore to a point in time.
	pitr *stashv1beta1.PITRRestoreStatus
	// restored is what of the snapshot went through the rule's filter.
	restored *stashv1beta1.RestoredContents
	// credentials says, after the snapshot's accounts replaced the
	// target's, whether the AppBinding's Secret still logs in ("" if so).
	credentials string
}

// where is the load's position, "" before it started.
func (r *restoreRun) where() string {
	if l := r.loader.Load(); l != nil {
		return positionText(l.Position())
	}
	return ""
}

// runRestore runs one claimed restore: its time limit, the restore job,
// the postRestore hook, and the report of the outcome.
func (a *Agent) runRestore(ctx context.Context, rs *stashv1beta1.RestoreSession) {
	run := &restoreRun{rs: rs, start: a.clock(), report: &restoreStatus{a: a, name: rs.Name}}
	a.pushStart(ctx, "restore", restoreCommon(rs), run.start)
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

// restore is the restore's data path, top to bottom. It writes no status:
// what it learns goes into run, and what the user must see while it runs
// (the snapshot, the start, the progress) goes to run.report.
func (a *Agent) restore(ctx context.Context, run *restoreRun) (err error) {
	rs := run.rs
	unapplied, err := checkRestoreSpec(rs)
	if err != nil {
		return err
	}
	if len(unapplied) > 0 {
		a.event(ctx, rs, corev1.EventTypeWarning, "FieldsNotApplied", fmt.Sprintf("RestoreSession %s: %s not applied: the restore runs in agent %s's Pod, whose settings come from the BackupConfiguration's runtimeSettings and tempDir (or `kubectl stash agent apply`)",
			rs.Name, strings.Join(unapplied, ", "), contract.AgentName(a.cfg.AppBinding)))
	}
	ab, conn, err := a.connection(ctx)
	if err != nil {
		return err
	}
	taskName, step, err := resolveTask(rs.Spec.Task, ab, true)
	if err != nil {
		return err
	}
	if err := checkRuleSources(rs, step); err != nil {
		return err
	}
	noBinlog, err := skipBinlogArgs(rs)
	if err != nil {
		return err
	}
	step.Args = slices.Concat(step.Args, noBinlog)
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
	if err := pointAnnotations(rs.Annotations); err != nil {
		return err
	}
	want := wantedSnapshot(rs, step)
	sel, err := restoreSelection(rs)
	if err != nil {
		return err
	}
	if arg := oneDatabaseArg(step.Args); arg != "" && !sel.Empty() {
		// mysql --one-database skips every statement outside one database,
		// a renamed one included: the restore would load nothing and say
		// it succeeded.
		return fmt.Errorf("%w: RestoreSession %s chooses what to restore (include, exclude or %s) while its task's args hold %s, which makes mysql skip what is not in one database: leave %s out of the args (the task params or the AppBinding's restore task) and choose with include (the database was not changed)", ErrInvalid, rs.Name, contract.AnnotationRestoreRenameDatabase, arg, arg)
	}
	if !sel.Empty() && (want.at != "" || want.gtid != "") {
		return fmt.Errorf("%w: RestoreSession %s restores to a point in time, which replays the binlog of the whole server onto the whole snapshot: leave include, exclude and %s out (the database was not changed)", ErrInvalid, rs.Name, contract.AnnotationRestoreRenameDatabase)
	}
	var pre *prefetch
	if want.isID() {
		pre = startPrefetch(ctx, rr, want.snapshot)
		defer pre.stop()
	}
	prepCtx, cancelPrep := context.WithCancelCause(ctx)
	defer cancelPrep(nil)
	type picked struct {
		snap restic.Snapshot
		plan *replayPlan
		err  error
	}
	pickc := make(chan picked, 1)
	go func() {
		var p picked
		if want.at != "" || want.gtid != "" {
			p.snap, p.plan, p.err = a.pickPointInTime(ctx, rr, rs, want)
		} else {
			p.snap, p.err = a.pickSnapshot(ctx, rr, rs, want)
		}
		if p.err != nil {
			cancelPrep(p.err) // no wait for the database when there is nothing to restore
		}
		pickc <- p
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
	if err := checkRulePaths(rs, file); err != nil {
		return err
	}
	// A selection that picks nothing is refused before anything changes.
	// The manifest says so at once; without one, the filter writes nothing
	// until something is selected.
	if !sel.Empty() && slices.Contains(snap.Tags, contract.TagManifest) {
		rec, err := snapshotManifest(ctx, rr, snap, file)
		if err != nil {
			a.log.Warn("could not read the snapshot's manifest; the selection is checked as the dump streams", "restore", rs.Name, "err", err.Error())
		} else if err := checkSelection(sel, rec.Manifest, snap.ID); err != nil {
			return err
		}
	}
	run.report.snapshot(ctx, snap.ID)

	run.host = conn.Host
	if c, err := a.runHook(ctx, preRestoreHook(rs), conn.Host); c != nil {
		meta.SetStatusCondition(&run.conds, *c)
		if err != nil {
			return fmt.Errorf("%w; the database was not changed", err)
		}
	}
	// Nothing else may write between the base and the replay's end: the
	// target refuses other clients' writes until the restore lets go.
	if holdsReadOnly(rs.Annotations, p.plan != nil) {
		release, err := a.holdReadOnly(ctx, run, client, dbFiles, conn.User)
		if err != nil {
			return err
		}
		defer func() { err = release(err) }()
	}
	// Stream restic dump into mysql, each table over the next free
	// connection: no shell, and no copy of the dump beyond a bounded spool.
	// The position is recorded first: should this agent die, whoever
	// settles the restore can tell a database it changed from one it did not.
	if err := run.report.starting(ctx, total); err != nil {
		return fmt.Errorf("could not record the restore's start in its status, so nothing was applied and the database was not changed: %w", err)
	}
	argv := client.LoadArgv(dbFiles, step.Args)
	conns := a.loadConnections(ctx, client, dbFiles)
	stop := run.report.watch(ctx, run, total)
	loader, err := sqlload.Start(ctx, sqlload.Options{
		Argv:         argv,
		Env:          append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dbFiles.Dir}, a.childEnv()...), dbFiles.Env...),
		Connections:  conns,
		DeferIndexes: !a.cfg.RestoreKeepIndexes,
		SplitTables:  !a.cfg.RestoreWholeTables,
		SpoolDir:     dbFiles.Dir,
		SpoolLimit:   spoolLimit(dbFiles.Dir, a.cfg.RestoreSpool),
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
	head := &headCopy{w: loader, max: 256 << 10} // the binlog position, for a replay
	if p.plan != nil {
		into = head
	}
	// The filter passes on what the rule selects (everything, unchanged,
	// without one) and says what went through.
	filter := dumpfilter.New(into, sel)
	into = filter
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
	var loadErr, filterErr error
	if dumpErr == nil {
		filterErr = filter.Close()
	}
	switch {
	case dumpErr == nil && filterErr != nil:
		loader.Abort(filterErr)
	case dumpErr == nil:
		loadErr = loader.Close()
	default:
		loader.Abort(dumpErr)
		if le := (*sqlload.Error)(nil); errors.As(dumpErr, &le) {
			// restic stopped because mysql did: mysql's error is the cause.
			loadErr, dumpErr = le, nil
		}
	}
	stop()
	run.restored = restoredContents(sel, filter.Report())
	if errors.Is(filterErr, dumpfilter.ErrNothingSelected) {
		return fmt.Errorf("%w: %w; nothing was restored and the database was not changed", ErrInvalid, filterErr)
	} else if filterErr != nil {
		return fmt.Errorf("restoring snapshot %s: %w", shortID(snap.ID), filterErr)
	}
	st := loader.Stats()
	a.log.Info("restore loaded", "restore", rs.Name, "connections", conns, "sections", st.Sections, "tableSections", st.TableSections, "spoolPeak", st.SpoolPeak, "deferredIndexTables", st.DeferredTables)
	if loadErr != nil {
		stderr, section := "", ""
		if le := (*sqlload.Error)(nil); errors.As(loadErr, &le) {
			stderr, section = le.Stderr, le.Section
		}
		var packet int64
		if lostErrors[sqlCode(stderr)] {
			// The server closes the connection on a packet over its limit,
			// and the client sees only that: ask for the limit to say so.
			packet, _ = client.ServerPacket(context.WithoutCancel(ctx), dbFiles, a.childEnv())
		}
		return sqlErrorIn(ab, section, stderr, loadErr, run.touched.Load(), packet)
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
	if p.plan != nil {
		run.pitr, err = a.replay(ctx, rr, p.plan, head.head, client, dbFiles, step.Args)
		if err != nil {
			return err
		}
	}
	if run.restored.Accounts {
		run.credentials = a.checkCredentials(ctx, ab, conn, client, dbFiles)
	}
	return nil
}

// snapshotWant is what a restore asks for: a snapshot ID or "latest", and
// whose backups to look at.
type snapshotWant struct {
	snapshot, host, at string
	// gtid asks for a replay up to a transaction, through it unless exclusive.
	gtid      string
	exclusive bool
	// allowGap replays across a gap in the archive instead of refusing.
	allowGap bool
}

var hexID = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

// isID says the rule names one snapshot by an ID restic resolves on its own.
func (w snapshotWant) isID() bool { return w.at == "" && w.gtid == "" && hexID.MatchString(w.snapshot) }

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
	gtid := rs.Annotations[contract.AnnotationRestoreToGTID]
	// "latest", a time and a GTID mean the newest backup of this product's
	// host unless a sourceHost says otherwise; an ID is looked up anywhere.
	if host == "" && (want == contract.Latest || at != "" || gtid != "") {
		host = contract.BackupHost
	}
	return snapshotWant{snapshot: want, host: host, at: at, gtid: gtid,
		exclusive: rs.Annotations[contract.AnnotationRestoreGTIDExclusive] == "true",
		allowGap:  rs.Annotations[contract.AnnotationRestoreAllowGap] == "true"}
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
		if contract.IsBinlogSnapshot(s) {
			return restic.Snapshot{}, fmt.Errorf("%w: snapshot %s is an archived binlog file, not a dump (the database was not changed): restore a point in time with --at or --to-gtid, or a dump from `kubectl stash snapshots %s` (host %s)",
				ErrInvalid, shortID(s.ID), rs.Spec.Repository.Name, contract.BackupHost)
		}
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
