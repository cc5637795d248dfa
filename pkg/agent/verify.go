package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	cschedule "github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumptee"
	"github.com/kubectl-stash/kubectl-stash/pkg/manifest"
	"github.com/kubectl-stash/kubectl-stash/pkg/metrics"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
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
	source     string // the AppBinding the config backs up
	tables     int
	mismatches []string
	restore    time.Duration
	loader     atomic.Pointer[sqlload.Loader]
	pitr       *stashv1beta1.PITRRestoreStatus
	pitrNote   string // why no replay was tried, when none was
	// integrity is the verdict on the Repository: true once the snapshot
	// was read back whole, false when data was lost; nil when neither was
	// proven.
	integrity *bool
	repo      *stashv1alpha1.Repository
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
	bc, mine, exists := a.verifyConfig(vs)
	if !exists && verifyPhase(vs.Status.Phase) == lifecycle.Pending && (vs.Spec.Target == nil || mine) {
		return a.refuseVerify(ctx, vs, fmt.Sprintf("BackupConfiguration %s does not exist in %s: verify one of `kubectl get backupconfigurations -n %s`", vs.Spec.Invoker.Name, a.cfg.Namespace, a.cfg.Namespace))
	}
	if !mine {
		// The config's own agent refuses a target no agent would claim.
		if exists && vs.Spec.Target != nil && bc.Spec.Target != nil && a.ours(bc.Spec.Target.Ref) && verifyPhase(vs.Status.Phase) == lifecycle.Pending {
			if msg := a.foreignTarget(*vs.Spec.Target); msg != "" {
				return a.refuseVerify(ctx, vs, msg)
			}
		}
		return nil // another database's
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
	if vs.Spec.Target != nil {
		if msg := a.unsafeTarget(bc); msg != "" {
			return a.refuseVerify(ctx, vs, msg)
		}
		// The target's agent reads the config's Repository: it waits for
		// the grant, as a restore into it would.
		if err := a.access(ctx, bc.Spec.Repository); errors.Is(err, errNoAccess) {
			return waitForAccess(ctx, a, a.verifies, "vs/"+nsName, vs.Name, func(s *stashv1beta1.VerificationSession) *[]metav1.Condition { return &s.Status.Conditions }, vs, err)
		}
	}
	// One verification at a time: each brings a server and a whole copy
	// of the database into the agent's memory and scratch volume, beside
	// the backups. Another waits for it.
	release, busy := a.reserve(verifyRunningKey, vs.Name)
	if busy {
		t.queue.AddAfter("vs/"+nsName, 5*time.Second)
	}
	if release == nil {
		return nil
	}
	claimed, ok, err := a.verifies.Claim(ctx, vs)
	if err != nil || !ok {
		release()
		return err
	}
	a.log.Info("claimed verification", "verification", vs.Name, "config", bc.Name)
	a.goSession(release, func(ctx context.Context) { a.verifies.Heartbeat(ctx, claimed.Name) }, func() { a.runVerify(a.workCtx, bc, claimed) })
	return nil
}

// verifyConfig finds a verification's config, and whether this agent runs
// it: the agent of the AppBinding it names as its target, else the agent
// of the config's database.
func (a *Agent) verifyConfig(vs *stashv1beta1.VerificationSession) (bc *stashv1beta1.BackupConfiguration, mine, exists bool) {
	obj, exists, _ := a.cur().configs.GetByKey(a.cfg.Namespace + "/" + vs.Spec.Invoker.Name)
	if exists {
		bc = obj.(*stashv1beta1.BackupConfiguration)
	}
	if vs.Spec.Target != nil {
		return bc, a.ours(*vs.Spec.Target), exists
	}
	return bc, exists && bc.Spec.Target != nil && a.ours(bc.Spec.Target.Ref), exists
}

// foreignTarget says why no agent would run a verification into target,
// or "" when its agent may.
func (a *Agent) foreignTarget(t stashv1beta1.TargetRef) string {
	switch {
	case t.Kind != appcatalog.KindAppBinding:
		return fmt.Sprintf("spec.target is a %s: a verification restores into an AppBinding (kind: AppBinding) served by a kubectl stash agent", t.Kind)
	case t.Namespace != "" && t.Namespace != a.cfg.Namespace:
		return fmt.Sprintf("spec.target names AppBinding %s/%s: a verification restores into an AppBinding in its own namespace, %s", t.Namespace, t.Name, a.cfg.Namespace)
	}
	return ""
}

// unsafeTarget says why this agent's database must not be a config's
// verification target, or "": a verification replaces everything in it,
// so it must not be the database the config backs up, nor any database a
// config backs up.
func (a *Agent) unsafeTarget(bc *stashv1beta1.BackupConfiguration) string {
	if bc.Spec.Target != nil && a.ours(bc.Spec.Target.Ref) {
		return fmt.Sprintf("spec.target names AppBinding %s, the database BackupConfiguration %s backs up: a verification replaces everything in its target, so it never restores into its source; leave spec.target out to verify in a scratch server inside the agent's pod", a.cfg.AppBinding, bc.Name)
	}
	for _, o := range a.cur().configs.List() {
		c := o.(*stashv1beta1.BackupConfiguration)
		if c.Spec.Target != nil && a.ours(c.Spec.Target.Ref) {
			return fmt.Sprintf("AppBinding %s is backed up by BackupConfiguration %s, so it holds data worth keeping: a verification replaces everything in its target; name a server kept for verification only, or leave spec.target out to verify in a scratch server inside the agent's pod", a.cfg.AppBinding, c.Name)
		}
	}
	return ""
}

// runsVerify reports whether this agent is running vs right now.
func (a *Agent) runsVerify(vs *stashv1beta1.VerificationSession) bool {
	if vs.Status.ClaimedBy != a.identity {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running[verifyRunningKey] == vs.Name
}

// verifyRunningKey holds the agent's one running verification in a.running.
const verifyRunningKey = "verify/"

// refuseVerify ends a Pending verification that cannot run, as Invalid.
func (a *Agent) refuseVerify(ctx context.Context, vs *stashv1beta1.VerificationSession, msg string) error {
	err := lifecycle.UpdateStatusIf(ctx, a.stash.VerificationSessions(a.cfg.Namespace), vs.Name, func(s *stashv1beta1.VerificationSession) error {
		if verifyPhase(s.Status.Phase) != lifecycle.Pending {
			return lifecycle.ErrSettled
		}
		now := metav1.NewTime(a.clock())
		s.Status.Phase, s.Status.Message, s.Status.CompletionTime = stashv1beta1.VerificationInvalid, msg, &now
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stashv1beta1.ConditionVerified, Status: metav1.ConditionFalse, Reason: string(stashv1beta1.VerificationInvalid), Message: msg})
		return nil
	})
	if errors.Is(err, lifecycle.ErrSettled) || apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		a.event(ctx, vs, corev1.EventTypeWarning, "VerificationFailed", msg)
	}
	return err
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
	if bc.Spec.Target == nil {
		return fmt.Errorf("%w: BackupConfiguration %s has no spec.target, so it backs up no database to verify", ErrInvalid, bc.Name)
	}
	run.source = bc.Spec.Target.Ref.Name
	repo, rr, cleanupRepo, err := a.openRepo(ctx, bc.Spec.Repository, false)
	if err != nil {
		return err
	}
	defer cleanupRepo()
	run.repo = repo

	// 1. The snapshot, and its manifest's promise.
	snap, err := a.verifySnapshot(ctx, rr, bc, run.source, vs.Spec.Snapshot)
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

	// 2. Where it restores: a scratch server, or the AppBinding named.
	into, err := a.verifyDatabase(ctx, vs, client)
	if err != nil {
		return err
	}
	defer into.cleanup()
	files := into.files

	// 3. The restore, timed: the measured recovery time.
	file := contract.DumpFile(run.source)
	if len(snap.Paths) > 0 {
		file = snap.Paths[0]
	}
	began := a.clock()
	loader, err := sqlload.Start(ctx, sqlload.Options{
		Argv:         client.LoadArgv(files, nil),
		Env:          append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + files.Dir}, a.childEnv()...), files.Env...),
		Connections:  a.loadConnections(ctx, client, files),
		DeferIndexes: !a.cfg.RestoreKeepIndexes,
		SplitTables:  !a.cfg.RestoreWholeTables,
		SpoolDir:     files.Dir,
		SpoolLimit:   spoolLimit(files.Dir, a.cfg.RestoreSpool),
		SkipTable:    into.skip,
	})
	if err != nil {
		return fmt.Errorf("start mysql: %w", err)
	}
	run.loader.Store(loader)
	finder := dumptee.NewFinder(loader)
	// The dump's FLUSH PRIVILEGES would load the source's accounts, and
	// lock the agent out of the scratch server: the restored accounts are
	// compared as data instead.
	head := &headCopy{w: newLineDropper(finder, flushPrivileges), max: 256 << 10} // the binlog position, for a replay
	dumpErr := rr.Dump(ctx, snap.ID, file, head)
	readWhole := dumpErr == nil
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
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("the verification was stopped while it restored snapshot %s (at %s): %w", shortID(snap.ID), where, context.Cause(ctx))
		case errors.Is(dumpErr, restic.ErrBackend), errors.Is(dumpErr, restic.ErrStalled), errors.Is(dumpErr, restic.ErrWrongPassword),
			errors.Is(dumpErr, restic.ErrLocked), errors.Is(dumpErr, restic.ErrCertificate), errors.Is(dumpErr, restic.ErrInterrupted),
			errors.Is(dumpErr, restic.ErrRepoNotExist):
			return fmt.Errorf("reading snapshot %s from Repository %s failed (at %s), so nothing was proven: %w", shortID(snap.ID), repo.Name, where, repoErr(repo, dumpErr))
		}
		run.integrity = ptr.To(false)
		return fmt.Errorf("snapshot %s could not be read back from Repository %s: the restore stopped at %s: %w; the repository has lost data: `kubectl stash check %s --read-data-subset 100%%` finds what else is damaged",
			shortID(snap.ID), repo.Name, where, repoErr(repo, dumpErr), repo.Name)
	}
	if readWhole {
		run.integrity = ptr.To(true) // every byte of the snapshot was read and decrypted
	}
	if loadErr != nil {
		stderr := ""
		if le := (*sqlload.Error)(nil); errors.As(loadErr, &le) {
			stderr = le.Stderr
		}
		return fmt.Errorf("snapshot %s did not restore into %s, at %s: %s", shortID(snap.ID), into.name, where, strings.TrimSpace(elide(firstLine(stderr))))
	}
	rec, found, err := finder.Record()
	switch {
	case err != nil:
		return fmt.Errorf("snapshot %s: %w", shortID(snap.ID), err)
	case !found:
		return fmt.Errorf("snapshot %s is tagged %s but its dump ends without one: the dump was cut short or rewritten", shortID(snap.ID), contract.TagManifest)
	case len(rec.Manifest.Tables) == 0 && len(rec.Manifest.Databases) == 0:
		return fmt.Errorf("snapshot %s holds no database and no table, so a verification proves nothing: check the config's dump arguments", shortID(snap.ID))
	}

	// 4. The restored data, dumped the same way, against the manifest.
	got, err := a.scratchManifest(ctx, client, files, rec.DumpArgs)
	if err != nil {
		return err
	}
	run.tables = len(rec.Manifest.Tables)
	run.mismatches = manifest.Compare(rec.Manifest, got, into.ignore)
	if n := len(run.mismatches); n > 0 {
		return fmt.Errorf("snapshot %s restored, but %d difference(s) from what was backed up: %s", shortID(snap.ID), n, strings.Join(run.mismatches[:min(n, 5)], "; "))
	}

	// 5. With the binlog archived, a replay to a random second of the
	// window, counted against what the archive holds up to it.
	if p, _ := contract.ParsePITR(bc.Annotations); p.On {
		run.pitr, run.pitrNote, err = a.verifyReplay(ctx, rr, bc, run.source, snap, head.head, client, files)
		if err != nil {
			return fmt.Errorf("snapshot %s restored and equal to what was backed up, but the replay of the binlog archive on top of it failed: %w", shortID(snap.ID), err)
		}
	}
	return nil
}

// verifyReplay replays the archive on top of the restored snapshot up to
// a random second between the snapshot and the end of the window. It
// returns why it replayed nothing where there is nothing to replay.
func (a *Agent) verifyReplay(ctx context.Context, rr *restic.Repo, bc *stashv1beta1.BackupConfiguration, source string, snap restic.Snapshot, head []byte, client database.Client, files *database.Files) (*stashv1beta1.PITRRestoreStatus, string, error) {
	if !slices.Contains(snap.Tags, contract.TagBinlogCoordinates) {
		return nil, "the snapshot records no binlog position (taken before point-in-time recovery was on)", nil
	}
	if tagValue(snap.Tags, "scope") == "partial" {
		return nil, "the snapshot dumps only part of the server, onto which the binlog cannot be replayed", nil
	}
	archived, err := rr.Snapshots(ctx, contract.BinlogHost, []string{contract.TagPITR})
	if err != nil {
		return nil, "", fmt.Errorf("list the binlog archive: %w", err)
	}
	var vs []contract.BinlogVersion
	for _, s := range archived {
		if v, ok := binlogVersion(s); ok && tagValue(s.Tags, "appbinding") == source {
			vs = append(vs, v)
		}
	}
	latest, _ := contract.LatestVersions(vs)
	if len(latest) == 0 {
		return nil, "the binlog archive holds nothing yet", nil
	}
	// The window as the config's status shows it, from the snapshot on.
	from := snap.Time.Truncate(time.Second).Add(time.Second)
	var until time.Time
	if ps := bc.Status.PointInTimeRecovery; ps != nil && ps.LastRecoverableTime != nil {
		until = ps.LastRecoverableTime.Time
		if ps.FirstRecoverableTime != nil && ps.FirstRecoverableTime.After(from) {
			from = ps.FirstRecoverableTime.Time.Truncate(time.Second)
		}
	}
	// The status's window may be a second ahead of the archive this
	// listing saw: a whole second is replayable only once the archive
	// committed past its end.
	if reach := latest[len(latest)-1].Committed.Add(-time.Second).Truncate(time.Second); reach.Before(until) {
		until = reach
	}
	if !until.After(from) {
		return nil, "the window holds no whole second after the snapshot yet", nil
	}
	at := from.Add(time.Duration(rand.Int64N(int64(until.Sub(from)/time.Second)+1)) * time.Second)
	plan := &replayPlan{target: at.UTC().Format(time.RFC3339), stop: at.Add(time.Second), source: source, versions: latest}
	if scope := tagValue(snap.Tags, "scope"); strings.HasPrefix(scope, "db:") {
		plan.database = strings.TrimPrefix(scope, "db:")
	}
	if err := plan.check(snap.Time, at); err != nil {
		return nil, "", fmt.Errorf("the window says %s is recoverable, but %w", plan.target, err)
	}
	if err := plan.checkStart(ctx, rr, snap); err != nil {
		return nil, "", fmt.Errorf("the window says %s is recoverable, but %w", plan.target, err)
	}
	st, err := a.replay(ctx, rr, plan, head, client, files, nil)
	return st, "", err
}

// verifySnapshot resolves the session's snapshot among this database's
// dumps: an ID, or latest.
func (a *Agent) verifySnapshot(ctx context.Context, rr *restic.Repo, bc *stashv1beta1.BackupConfiguration, source, want string) (restic.Snapshot, error) {
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
		snaps = slices.DeleteFunc(snaps, func(s restic.Snapshot) bool { return tagValue(s.Tags, "appbinding") != source })
	}
	s, ok := contract.FindSnapshot(snaps, want, time.Time{})
	switch {
	case !ok && want == contract.Latest:
		return s, fmt.Errorf("%w: Repository %s has no backup of AppBinding %s to verify: take one with `kubectl stash trigger %s`", ErrInvalid, bc.Spec.Repository.Name, source, bc.Name)
	case !ok:
		return s, fmt.Errorf("%w: snapshot %s is not in Repository %s: list them with `kubectl stash snapshots %s`", ErrInvalid, want, bc.Spec.Repository.Name, bc.Spec.Repository.Name)
	case contract.IsBinlogSnapshot(s):
		return s, fmt.Errorf("%w: snapshot %s is an archived binlog file, not a dump: verify a dump from `kubectl stash snapshots %s`", ErrInvalid, shortID(s.ID), bc.Spec.Repository.Name)
	case tagValue(s.Tags, "appbinding") != source:
		return s, fmt.Errorf("%w: snapshot %s is not a backup of AppBinding %s (the database of BackupConfiguration %s): verify it with its own config", ErrInvalid, shortID(s.ID), source, bc.Name)
	}
	return s, nil
}

// scratchManifest dumps the scratch server with the backup's options and
// builds its manifest. Options that need a binlog, which the scratch
// server does not write, are left out: they add only a comment.
func (a *Agent) scratchManifest(ctx context.Context, client database.Client, files *database.Files, recorded []string) (*manifest.Manifest, error) {
	// Filtered again: a trailer written by another version, or by hand,
	// must not point this dump at another server or file.
	argv := append([]string{client.Dump, "--defaults-extra-file=" + files.OptionFile}, dumptee.RecordedArgs(recorded)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append([]string{"HOME=" + files.Dir}, a.childEnv()...), files.Env...)
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	b := manifest.NewBuilder()
	cmd.Stdout = b
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dumping the restored database again failed: %s: %w", strings.TrimSpace(stderr.String()), err)
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
	if p := run.pitr; p != nil {
		msg += fmt.Sprintf("; then the binlog archive replayed %d transactions on top, to %s", p.Transactions, p.Target)
	}
	switch {
	case errors.Is(err, ErrInvalid):
		phase, msg = stashv1beta1.VerificationInvalid, err.Error()
	case err != nil:
		phase, msg = stashv1beta1.VerificationFailed, err.Error()
	}
	// The Repository's verdict first: whoever sees the session end then
	// sees it too.
	if run.integrity != nil && run.repo != nil {
		a.recordIntegrity(ctx, run.bc, run.repo, *run.integrity)
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
		s.Status.PointInTime = run.pitr
		switch {
		case run.pitr != nil:
			pc := metav1.Condition{Type: stashv1beta1.ConditionPointInTimeRestored, Status: metav1.ConditionTrue, Reason: "Replayed",
				Message: fmt.Sprintf("%d transactions replayed from %s to %s, as the archive holds", run.pitr.Transactions, run.pitr.StartPosition, run.pitr.Target)}
			if err != nil {
				pc.Status, pc.Reason, pc.Message = metav1.ConditionFalse, "ReplayFailed", msg
			}
			meta.SetStatusCondition(&s.Status.Conditions, pc)
		case run.pitrNote != "":
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: stashv1beta1.ConditionPointInTimeRestored, Status: metav1.ConditionUnknown, Reason: "NothingToReplay", Message: run.pitrNote})
		}
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
		// The newest snapshot verified: verifying an older one later does
		// not move it back.
		if err == nil && (v.LastVerifiedSnapshotTime == nil || !run.snapTime.Before(v.LastVerifiedSnapshotTime.Time)) {
			v.LastVerifiedSnapshot, v.LastVerifiedTime = run.snapshot, &metav1.Time{Time: end}
			v.LastVerifiedSnapshotTime = &metav1.Time{Time: run.snapTime}
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
	if t := vs.Spec.Target; t != nil {
		msg = fmt.Sprintf("the agent %s running this verification stopped before it finished, so nothing was proven; the source database and the repository were not changed, and AppBinding %s, its target, may be partly restored: verify again (`kubectl stash verify %s --into appbinding/%s`), which empties it first", vs.Status.ClaimedBy, t.Name, vs.Spec.Invoker.Name, t.Name)
	}
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
		return nil
	default:
		return err
	}
	if bc, ok, _ := a.verifyConfig(vs); ok && bc != nil {
		_ = a.updateConfigStatus(ctx, bc.Name, func(c *stashv1beta1.BackupConfiguration) {
			if c.Status.Verification == nil {
				c.Status.Verification = &stashv1beta1.VerificationStatus{}
			}
			c.Status.Verification.LastSession, c.Status.Verification.LastPhase = vs.Name, stashv1beta1.VerificationFailed
		})
		end := a.clock()
		start := end
		if vs.Status.StartTime != nil {
			start = vs.Status.StartTime.Time
		}
		res := metrics.VerificationResult{Common: a.common(bc), End: end, Duration: end.Sub(start)}
		a.metrics.SetVerification(res)
		a.push(ctx, bc, metrics.VerificationRegistry(res))
		// The stopped agent's restic lock, which restic removes only once
		// it is provably stale.
		uctx, cancel := context.WithTimeout(ctx, orphanInspectTimeout)
		defer cancel()
		if _, rr, cleanup, err := a.openRepo(uctx, bc.Spec.Repository, false); err == nil {
			_ = rr.Unlock(uctx, false)
			cleanup()
		}
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
// or the snapshot) makes it idempotent across agents. It reports whether
// the session exists now.
func (a *Agent) fireVerify(ctx context.Context, config, suffix, snapshot string) bool {
	bc, ok := a.config(a.cfg.Namespace + "/" + config)
	if !ok || bc.Spec.Paused {
		return false
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
		return false
	default:
		a.log.Info("verification created", "verification", vs.Name, "snapshot", snapshot)
	}
	return true
}

// countForVerification counts a successful backup toward the config's
// verify-every, and starts a verification of its snapshot when due.
func (a *Agent) countForVerification(ctx context.Context, bc *stashv1beta1.BackupConfiguration, snapshot string) {
	v, err := contract.ParseVerify(bc.Annotations, cschedule.Check)
	if err != nil || v.Every == 0 || a.cfg.Self == "" {
		return // without dump-tee, the backup has no manifest to verify
	}
	due := false
	err = a.updateConfigStatus(ctx, bc.Name, func(c *stashv1beta1.BackupConfiguration) {
		if c.Status.Verification == nil {
			c.Status.Verification = &stashv1beta1.VerificationStatus{}
		}
		c.Status.Verification.BackupsSinceVerification++
		due = c.Status.Verification.BackupsSinceVerification >= v.Every
	})
	if err != nil {
		a.log.Error("could not count the backup toward verify-every", "config", bc.Name, "err", err.Error())
		return
	}
	// The count starts again only once the verification exists: one that
	// could not be created is tried again after the next backup.
	if due && a.fireVerify(ctx, bc.Name, "-"+shortID(snapshot), snapshot) {
		_ = a.updateConfigStatus(ctx, bc.Name, func(c *stashv1beta1.BackupConfiguration) {
			if c.Status.Verification != nil {
				c.Status.Verification.BackupsSinceVerification = 0
			}
		})
	}
}

// verifyCondition is the config's VerificationScheduled condition: nil
// without verification annotations.
func verifyCondition(v contract.Verify, err error) *metav1.Condition {
	switch {
	case err != nil:
		return &metav1.Condition{Type: stashv1beta1.ConditionVerificationScheduled, Status: metav1.ConditionFalse, Reason: "InvalidVerification",
			Message: err.Error() + "; backups go on, and no verification starts on its own until it is fixed"}
	case v.Schedule == "" && v.Every == 0:
		return nil
	}
	var when []string
	if v.Schedule != "" {
		when = append(when, "on the schedule "+v.Schedule)
	}
	if v.Every > 0 {
		when = append(when, fmt.Sprintf("after every %d successful backup(s)", v.Every))
	}
	return &metav1.Condition{Type: stashv1beta1.ConditionVerificationScheduled, Status: metav1.ConditionTrue, Reason: "Scheduled",
		Message: "backups are verified " + strings.Join(when, " and ")}
}

// sameCondition says whether conds holds c with the same status, reason
// and message.
func sameCondition(conds []metav1.Condition, c metav1.Condition) bool {
	got := meta.FindStatusCondition(conds, c.Type)
	return got != nil && got.Status == c.Status && got.Reason == c.Reason && got.Message == c.Message
}
