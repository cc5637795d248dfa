package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	cschedule "github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumptee"
	"github.com/kubectl-stash/kubectl-stash/pkg/manifest"
	"github.com/kubectl-stash/kubectl-stash/pkg/metrics"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/scratchdb"
	"github.com/kubectl-stash/kubectl-stash/pkg/sqlload"
)

// A verification restores one snapshot into a scratch server the agent
// starts in its own scratch volume, dumps that server again with the
// options the backup used, and compares the two manifests table by table:
// the one the backup appended to its dump, and the one computed the same
// way from the restored data. The source and every production database
// are never touched.

// verifyRun is one verification: what the job learns, for the final write.
type verifyRun struct {
	vs    *stashv1beta1.VerificationSession
	bc    *stashv1beta1.BackupConfiguration
	start time.Time
	limit sessionLimit

	snapshot   string
	snapTime   time.Time
	tables     int
	mismatches []string
	restore    time.Duration
	loader     atomic.Pointer[sqlload.Loader]
}

// verifyKind plugs VerificationSessions into the shared session lifecycle.
func (a *Agent) verifyKind() lifecycle.Kind[*stashv1beta1.VerificationSession] {
	return lifecycle.Kind[*stashv1beta1.VerificationSession]{
		Name:   stashv1beta1.KindVerificationSession,
		Client: a.stash.VerificationSessions(a.cfg.Namespace),
		State: func(s *stashv1beta1.VerificationSession) lifecycle.State {
			return lifecycle.State{Phase: verifyPhase(s.Status.Phase), ClaimedBy: s.Status.ClaimedBy, Beat: lastBeat(s.Status.HeartbeatTime, s.Status.StartTime)}
		},
		Claim: func(s *stashv1beta1.VerificationSession, by string, now time.Time) {
			t := metav1.NewTime(now)
			s.Status.Phase = stashv1beta1.VerificationRunning
			s.Status.ClaimedBy, s.Status.StartTime, s.Status.HeartbeatTime = by, &t, &t
		},
		Beat: func(s *stashv1beta1.VerificationSession, now time.Time) {
			s.Status.HeartbeatTime = &metav1.Time{Time: now}
		},
	}
}

func verifyPhase(p stashv1beta1.VerificationPhase) lifecycle.Phase {
	switch p {
	case "", stashv1beta1.VerificationPending:
		return lifecycle.Pending
	case stashv1beta1.VerificationRunning:
		return lifecycle.Running
	}
	return lifecycle.Done
}

// syncVerify claims a Pending verification of one of this database's
// configs and runs it. It runs beside the config's backups: it only reads
// the repository, and writes only to its own scratch server.
func (a *Agent) syncVerify(ctx context.Context, nsName string) error {
	t := a.cur()
	obj, ok, _ := t.verifies.GetByKey(nsName)
	if !ok {
		return nil
	}
	vs := obj.(*stashv1beta1.VerificationSession)
	bc, ok := a.config(a.cfg.Namespace + "/" + vs.Spec.Invoker.Name)
	if !ok {
		return nil // another database's, or its config is gone
	}
	if vs.Status.Phase == stashv1beta1.VerificationRunning && !a.runsVerify(vs) {
		if !t.sightings.Timing("vs/" + vs.Name) {
			t.queue.Add("orphans")
		}
		return nil
	}
	if verifyPhase(vs.Status.Phase) != lifecycle.Pending {
		return nil
	}
	key := "verify/" + vs.Name
	a.mu.Lock()
	if a.draining || a.running[key] != "" {
		a.mu.Unlock()
		return nil
	}
	a.running[key] = vs.Name
	a.mu.Unlock()
	release := func() {
		a.mu.Lock()
		delete(a.running, key)
		a.mu.Unlock()
	}
	claimed, ok, err := a.verifies.Claim(ctx, vs)
	if err != nil || !ok {
		release()
		return err
	}
	a.log.Info("claimed verification", "verification", vs.Name, "config", bc.Name)
	a.work.Add(1)
	go func() {
		defer a.work.Done()
		defer release()
		hbCtx, stopHeartbeat := context.WithCancel(a.workCtx)
		defer stopHeartbeat()
		go a.verifies.Heartbeat(hbCtx, claimed.Name)
		a.runVerify(a.workCtx, bc, claimed)
	}()
	return nil
}

// runsVerify reports whether this agent is running vs right now.
func (a *Agent) runsVerify(vs *stashv1beta1.VerificationSession) bool {
	if vs.Status.ClaimedBy != a.identity {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running["verify/"+vs.Name] == vs.Name
}

// runVerify runs one claimed verification under its time limit and
// reports the outcome.
func (a *Agent) runVerify(ctx context.Context, bc *stashv1beta1.BackupConfiguration, vs *stashv1beta1.VerificationSession) {
	run := &verifyRun{vs: vs, bc: bc, start: a.clock()}
	limit, err := a.sessionLimit(vs.Spec.TimeOut, stashv1beta1.KindVerificationSession, vs.Name)
	if err == nil {
		run.limit = limit
		if limit.d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, limit.d)
			defer cancel()
		}
		err = a.verify(ctx, run)
		if err != nil && run.limit.d > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("the verification passed its time limit, %s, and was stopped: %w", run.limit.raise, err)
		}
	}
	a.finishVerify(context.WithoutCancel(ctx), run, err)
}

// verify is the verification's data path, top to bottom. It writes no
// status: what it learns goes into run.
func (a *Agent) verify(ctx context.Context, run *verifyRun) error {
	bc, vs := run.bc, run.vs
	if vs.Spec.Target != nil {
		return fmt.Errorf("%w: spec.target of VerificationSession %s: verifying into a named AppBinding is not supported yet; leave it out to verify in a scratch server inside the agent's pod", ErrInvalid, vs.Name)
	}
	repo, rr, cleanupRepo, err := a.openRepo(ctx, bc.Spec.Repository, false)
	if err != nil {
		return err
	}
	defer cleanupRepo()

	// 1. The snapshot, and its manifest's promise.
	snap, err := a.verifySnapshot(ctx, rr, bc, vs.Spec.Snapshot)
	if err != nil {
		return err
	}
	run.snapshot, run.snapTime = snap.ID, snap.Time
	if !slices.Contains(snap.Tags, contract.TagManifest) {
		return fmt.Errorf("%w: snapshot %s has no manifest to compare with (it was taken before verification existed, or by another tool): verify a backup taken since, such as the next one (`kubectl stash trigger %s`)",
			ErrInvalid, shortID(snap.ID), bc.Name)
	}
	client, err := database.FindClient()
	if err != nil {
		return err
	}

	// 2. A scratch server, removed on every path.
	dir, err := os.MkdirTemp(a.cfg.ScratchDir, contract.VerifyDirPrefix)
	if err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	srv, err := scratchdb.Start(ctx, scratchdb.Options{Dir: dir, Path: os.Getenv("PATH"), Env: a.childEnv(), Args: a.cfg.VerifyServerArgs, GrantTables: true})
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("start the scratch server for the verification: %w", err)
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			a.log.Error("could not remove the verification's scratch server", "verification", vs.Name, "err", err.Error())
		}
	}()
	files := &database.Files{Dir: filepath.Join(dir, "client"), OptionFile: srv.OptionFile}
	if err := os.MkdirAll(files.Dir, 0o700); err != nil {
		return err
	}

	// 3. The restore, timed: the measured recovery time.
	file := contract.DumpFile(a.cfg.AppBinding)
	if len(snap.Paths) > 0 {
		file = snap.Paths[0]
	}
	began := a.clock()
	loader, err := sqlload.Start(ctx, sqlload.Options{
		Argv:        client.LoadArgv(files, nil),
		Env:         append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + files.Dir}, a.childEnv()...),
		Connections: a.cfg.RestoreConnections,
		SpoolDir:    files.Dir,
		SpoolLimit:  spoolLimit(files.Dir, a.cfg.RestoreSpool),
	})
	if err != nil {
		return fmt.Errorf("start mysql: %w", err)
	}
	run.loader.Store(loader)
	finder := dumptee.NewFinder(loader)
	// The dump's FLUSH PRIVILEGES would load the source's accounts, and
	// lock the agent out of the scratch server: the restored accounts are
	// compared as data instead.
	dumpErr := rr.Dump(ctx, snap.ID, file, newLineDropper(finder, flushPrivileges))
	var loadErr error
	if dumpErr == nil {
		loadErr = loader.Close()
	} else {
		loader.Abort(dumpErr)
		if le := (*sqlload.Error)(nil); errors.As(dumpErr, &le) {
			loadErr, dumpErr = le, nil
		}
	}
	run.restore = a.clock().Sub(began)
	where := positionText(loader.Position())
	if dumpErr != nil {
		if errors.Is(dumpErr, restic.ErrStalled) || errors.Is(dumpErr, restic.ErrBackend) {
			a.markLocked(rr.URL, true)
		}
		return fmt.Errorf("snapshot %s could not be read back from Repository %s: the restore stopped at %s: %w; the repository has lost data: `kubectl stash check %s --read-data` finds what else is damaged",
			shortID(snap.ID), repo.Name, where, repoErr(repo, dumpErr), repo.Name)
	}
	if loadErr != nil {
		stderr := ""
		if le := (*sqlload.Error)(nil); errors.As(loadErr, &le) {
			stderr = le.Stderr
		}
		return fmt.Errorf("snapshot %s did not restore into the scratch server, at %s: %s", shortID(snap.ID), where, strings.TrimSpace(elide(firstLine(stderr))))
	}
	rec, found, err := finder.Record()
	switch {
	case err != nil:
		return fmt.Errorf("snapshot %s: %w", shortID(snap.ID), err)
	case !found:
		return fmt.Errorf("snapshot %s is tagged %s but its dump ends without one: the dump was cut short or rewritten", shortID(snap.ID), contract.TagManifest)
	}

	// 4. The restored data, dumped the same way, against the manifest.
	got, err := a.scratchManifest(ctx, client, files, rec.DumpArgs)
	if err != nil {
		return err
	}
	run.tables = len(rec.Manifest.Tables)
	run.mismatches = manifest.Compare(rec.Manifest, got, manifest.DefaultIgnore)
	if n := len(run.mismatches); n > 0 {
		return fmt.Errorf("snapshot %s restored, but %d difference(s) from what was backed up: %s", shortID(snap.ID), n, strings.Join(run.mismatches[:min(n, 5)], "; "))
	}
	return nil
}

// verifySnapshot resolves the session's snapshot among this database's
// dumps: an ID, or latest.
func (a *Agent) verifySnapshot(ctx context.Context, rr *restic.Repo, bc *stashv1beta1.BackupConfiguration, want string) (restic.Snapshot, error) {
	if want == "" {
		want = contract.Latest
	}
	host := contract.BackupHost
	if want != contract.Latest {
		host = "" // an ID is looked up anywhere, to say what it is
	}
	snaps, err := rr.Snapshots(ctx, host, nil)
	if err != nil {
		return restic.Snapshot{}, fmt.Errorf("list snapshots of Repository %s: %w", bc.Spec.Repository.Name, err)
	}
	if want == contract.Latest {
		snaps = slices.DeleteFunc(snaps, func(s restic.Snapshot) bool { return tagValue(s.Tags, "appbinding") != a.cfg.AppBinding })
	}
	s, ok := contract.FindSnapshot(snaps, want, time.Time{})
	switch {
	case !ok && want == contract.Latest:
		return s, fmt.Errorf("%w: Repository %s has no backup of AppBinding %s to verify: take one with `kubectl stash trigger %s`", ErrInvalid, bc.Spec.Repository.Name, a.cfg.AppBinding, bc.Name)
	case !ok:
		return s, fmt.Errorf("%w: snapshot %s is not in Repository %s: list them with `kubectl stash snapshots %s`", ErrInvalid, want, bc.Spec.Repository.Name, bc.Spec.Repository.Name)
	case contract.IsBinlogSnapshot(s):
		return s, fmt.Errorf("%w: snapshot %s is an archived binlog file, not a dump: verify a dump from `kubectl stash snapshots %s`", ErrInvalid, shortID(s.ID), bc.Spec.Repository.Name)
	}
	return s, nil
}

// scratchManifest dumps the scratch server with the backup's options and
// builds its manifest. Options that need a binlog, which the scratch
// server does not write, are left out: they add only a comment.
func (a *Agent) scratchManifest(ctx context.Context, client database.Client, files *database.Files, recorded []string) (*manifest.Manifest, error) {
	argv := []string{client.Dump, "--defaults-extra-file=" + files.OptionFile}
	for _, arg := range recorded {
		if strings.HasPrefix(arg, "--master-data") || strings.HasPrefix(arg, "--dump-slave") || strings.HasPrefix(arg, "--gtid") {
			continue
		}
		argv = append(argv, arg)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append([]string{"HOME=" + files.Dir}, a.childEnv()...)
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	b := manifest.NewBuilder()
	cmd.Stdout = b
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dumping the restored scratch server failed: %s: %w", strings.TrimSpace(stderr.String()), err)
	}
	return b.Manifest(), nil
}

// flushPrivileges is the line mysqldump --flush-privileges writes.
const flushPrivileges = "/*! FLUSH PRIVILEGES */;"

// lineDropper passes a stream through without the lines equal to drop.
type lineDropper struct {
	w     io.Writer
	drop  []byte
	state int    // deciding, or otherLine once the line cannot be drop
	buf   []byte // the current line's start while deciding
}

func newLineDropper(w io.Writer, drop string) *lineDropper {
	return &lineDropper{w: w, drop: []byte(drop)}
}

func (d *lineDropper) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if d.state == deciding {
			take := min(len(d.drop)+1-len(d.buf), len(seg))
			d.buf = append(d.buf, seg[:take]...)
			if !bytes.HasPrefix(d.drop, d.buf) {
				if _, err := d.w.Write(d.buf); err != nil {
					return 0, err
				}
				d.state, d.buf, seg = otherLine, d.buf[:0], seg[take:]
			} else {
				seg = nil
			}
		}
		if d.state == otherLine && len(seg) > 0 {
			if _, err := d.w.Write(seg); err != nil {
				return 0, err
			}
		}
		if i < 0 {
			break
		}
		// The line ends: a whole line equal to drop is dropped, newline too.
		if d.state == deciding && !bytes.Equal(d.buf, d.drop) {
			if _, err := d.w.Write(append(d.buf, '\n')); err != nil {
				return 0, err
			}
		} else if d.state == otherLine {
			if _, err := d.w.Write([]byte{'\n'}); err != nil {
				return 0, err
			}
		}
		d.state, d.buf = deciding, d.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

const (
	deciding = iota
	otherLine
)

// finishVerify writes the verification's outcome: its status, the
// config's last verification, an Event and the metrics.
func (a *Agent) finishVerify(ctx context.Context, run *verifyRun, err error) {
	end := a.clock()
	dur := end.Sub(run.start).Round(time.Second)
	phase := stashv1beta1.VerificationSucceeded
	msg := fmt.Sprintf("snapshot %s verified: restored in %s, and its %d tables equal what was backed up", shortID(run.snapshot), run.restore.Round(time.Second), run.tables)
	switch {
	case errors.Is(err, ErrInvalid):
		phase, msg = stashv1beta1.VerificationInvalid, err.Error()
	case err != nil:
		phase, msg = stashv1beta1.VerificationFailed, err.Error()
	}
	uerr := a.verifies.Finish(ctx, run.vs.Name, func(s *stashv1beta1.VerificationSession) {
		now := metav1.NewTime(end)
		s.Status.Phase = phase
		s.Status.CompletionTime = &now
		s.Status.SessionDuration = dur.String()
		s.Status.Message = msg
		s.Status.Snapshot = run.snapshot
		if !run.snapTime.IsZero() {
			s.Status.SnapshotTime = &metav1.Time{Time: run.snapTime}
		}
		s.Status.TablesChecked = run.tables
		s.Status.MismatchCount = len(run.mismatches)
		s.Status.Mismatches = run.mismatches[:min(len(run.mismatches), 50)]
		if run.restore > 0 {
			s.Status.RestoreDuration = run.restore.Round(100 * time.Millisecond).String()
		}
		c := metav1.Condition{Type: stashv1beta1.ConditionVerified, Status: metav1.ConditionTrue, Reason: "Verified", Message: msg}
		if err != nil {
			c.Status, c.Reason = metav1.ConditionFalse, string(phase)
			if len(run.mismatches) > 0 {
				c.Reason = "Mismatch"
			}
		}
		meta.SetStatusCondition(&s.Status.Conditions, c)
	})
	if errors.Is(uerr, lifecycle.ErrSettled) {
		a.log.Info("another agent settled this verification first; its outcome stands", "verification", run.vs.Name, "outcome", msg)
		return
	}
	if uerr != nil {
		a.log.Error("could not write the verification's final status", "verification", run.vs.Name, "err", uerr.Error())
	}
	typ, reason := corev1.EventTypeNormal, "VerificationSucceeded"
	if err != nil {
		typ, reason = corev1.EventTypeWarning, "VerificationFailed"
		a.log.Error("verification failed", "verification", run.vs.Name, "err", msg)
	} else {
		a.log.Info("verification succeeded", "verification", run.vs.Name, "snapshot", shortID(run.snapshot), "restore", run.restore.String())
	}
	a.event(ctx, run.vs, typ, reason, msg)
	_ = a.updateConfigStatus(ctx, run.bc.Name, func(c *stashv1beta1.BackupConfiguration) {
		v := c.Status.Verification
		if v == nil {
			v = &stashv1beta1.VerificationStatus{}
			c.Status.Verification = v
		}
		v.LastSession, v.LastPhase = run.vs.Name, phase
		if err == nil && (v.LastVerifiedTime == nil || !v.LastVerifiedTime.After(end)) {
			v.LastVerifiedSnapshot, v.LastVerifiedTime = run.snapshot, &metav1.Time{Time: end}
			v.LastRestoreDuration = run.restore.Round(100 * time.Millisecond).String()
		}
	})
	res := metrics.VerificationResult{Common: a.common(run.bc), Succeeded: err == nil, End: end, Duration: end.Sub(run.start), Restore: run.restore, Tables: run.tables, Mismatches: len(run.mismatches)}
	a.metrics.SetVerification(res)
	a.push(ctx, run.bc, metrics.VerificationRegistry(res))
	if n, err := a.trimVerifications(ctx, run.bc); err != nil {
		a.log.Error("could not trim verification history", "err", err.Error())
	} else if n > 0 {
		a.log.Info("trimmed verification history", "deleted", n)
	}
}

// settleOrphanVerify records a verification whose agent stopped as
// Failed. Its scratch server died with the agent's pod (or its process
// group), and the next agent to start removes its directory.
func (a *Agent) settleOrphanVerify(ctx context.Context, vs *stashv1beta1.VerificationSession) error {
	beat := a.verifyKind().State(vs).Beat
	still := func(s *stashv1beta1.VerificationSession) bool {
		return s.Status.ClaimedBy == vs.Status.ClaimedBy && a.verifyKind().State(s).Beat.Equal(beat)
	}
	msg := fmt.Sprintf("the agent %s running this verification stopped before it finished, so nothing was proven; the source database and the repository were not changed, and the scratch server went with the agent: verify again (`kubectl stash verify %s`)", vs.Status.ClaimedBy, vs.Spec.Invoker.Name)
	err := a.verifies.Settle(ctx, vs.Name, still, func(s *stashv1beta1.VerificationSession) {
		now := metav1.NewTime(a.clock())
		s.Status.Phase = stashv1beta1.VerificationFailed
		s.Status.Message = msg
		s.Status.CompletionTime = &now
		if s.Status.StartTime != nil {
			s.Status.SessionDuration = now.Sub(s.Status.StartTime.Time).Round(time.Second).String()
		}
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stashv1beta1.ConditionVerified, Status: metav1.ConditionFalse, Reason: "AgentStopped", Message: msg})
	})
	switch {
	case err == nil:
		a.event(ctx, vs, corev1.EventTypeWarning, "VerificationFailed", msg)
	case errors.Is(err, lifecycle.ErrSettled):
	default:
		return err
	}
	return nil
}

// trimVerifications deletes a config's oldest finished verifications
// beyond its history limit (the backups' limit; at least 1).
func (a *Agent) trimVerifications(ctx context.Context, bc *stashv1beta1.BackupConfiguration) (int, error) {
	limit := 1
	if bc.Spec.BackupHistoryLimit != nil && *bc.Spec.BackupHistoryLimit > 1 {
		limit = int(*bc.Spec.BackupHistoryLimit)
	}
	list, err := a.stash.VerificationSessions(a.cfg.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	var done []stashv1beta1.VerificationSession
	for _, s := range list.Items {
		if s.Spec.Invoker.Name == bc.Name && verifyPhase(s.Status.Phase) == lifecycle.Done {
			done = append(done, s)
		}
	}
	slices.SortFunc(done, func(x, y stashv1beta1.VerificationSession) int {
		if c := y.CreationTimestamp.Time.Compare(x.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(y.Name, x.Name)
	})
	n := 0
	for i := limit; i < len(done); i++ {
		if err := a.stash.VerificationSessions(a.cfg.Namespace).Delete(ctx, done[i].Name, metav1.DeleteOptions{}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// verifySlotPrefix keys a config's verification schedule in the scheduler,
// beside its backup schedule.
const verifySlotPrefix = "verify:"

func verifySlotKey(config string) string { return verifySlotPrefix + config }

// fireVerify creates a VerificationSession of a config; the name (a slot,
// or the snapshot) makes it idempotent across agents.
func (a *Agent) fireVerify(ctx context.Context, config, suffix, snapshot string) {
	bc, ok := a.config(a.cfg.Namespace + "/" + config)
	if !ok || bc.Spec.Paused {
		return
	}
	vs := &stashv1beta1.VerificationSession{
		TypeMeta:   metav1.TypeMeta{APIVersion: stashv1beta1.GroupVersion.String(), Kind: stashv1beta1.KindVerificationSession},
		ObjectMeta: metav1.ObjectMeta{Name: contract.VerifySessionName(config, suffix), Namespace: a.cfg.Namespace, Labels: map[string]string{stashv1beta1.LabelInvokerName: config}},
		Spec: stashv1beta1.VerificationSessionSpec{
			Invoker:  stashv1beta1.BackupInvokerRef{APIGroup: stashv1beta1.GroupVersion.Group, Kind: stashv1beta1.KindBackupConfiguration, Name: config},
			Snapshot: snapshot,
		},
	}
	_, err := a.stash.VerificationSessions(a.cfg.Namespace).Create(ctx, vs, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		a.log.Info("verification already created", "verification", vs.Name)
	case err != nil:
		a.log.Error("create verification", "config", config, "err", err)
	default:
		a.log.Info("verification created", "verification", vs.Name, "snapshot", snapshot)
	}
}

// countForVerification counts a successful backup toward the config's
// verify-every, and starts a verification of its snapshot when due.
func (a *Agent) countForVerification(ctx context.Context, bc *stashv1beta1.BackupConfiguration, snapshot string) {
	v, err := contract.ParseVerify(bc.Annotations, cschedule.Check)
	if err != nil || v.Every == 0 {
		return
	}
	due := false
	err = a.updateConfigStatus(ctx, bc.Name, func(c *stashv1beta1.BackupConfiguration) {
		if c.Status.Verification == nil {
			c.Status.Verification = &stashv1beta1.VerificationStatus{}
		}
		c.Status.Verification.BackupsSinceVerification++
		due = c.Status.Verification.BackupsSinceVerification >= v.Every
		if due {
			c.Status.Verification.BackupsSinceVerification = 0
		}
	})
	if err != nil {
		a.log.Error("could not count the backup toward verify-every", "config", bc.Name, "err", err.Error())
		return
	}
	if due {
		a.fireVerify(ctx, bc.Name, "-"+shortID(snapshot), snapshot)
	}
}
