package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/binlog"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/metrics"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// The binlog archive: while the agent leads, each config with
// point-in-time recovery on keeps one binlog stream open, as a replica
// would (mariadb-binlog --read-from-remote-server --raw --stop-never), and
// commits what it received to the Repository every interval. Each commit
// of a file is a restic snapshot of the file up to its last whole event
// (host binlog-0, the version in its tags); restic's chunking makes a
// growing file cost only its new chunks, and the version it supersedes is
// forgotten. A stream resumes from the start of the newest archived file:
// the server sends the same bytes again, so there is no gap and no
// duplicate, whatever stopped it.

// maxGaps bounds the gaps kept in a config's status: the newest stay.
const maxGaps = 20

// archiveHandle is one config's running archive.
type archiveHandle struct {
	cancel  context.CancelFunc
	done    chan struct{}
	spec    contract.PITR
	repo    stashv1beta1.RepositoryRef
	backups chan struct{} // a backup of the config succeeded
}

// syncArchive starts, restarts or stops the config's archive to match its
// spec; ctx is the term's, so the archive stops when leadership ends.
func (a *Agent) syncArchive(ctx context.Context, name string, bc *stashv1beta1.BackupConfiguration, p contract.PITR) {
	t := a.cur()
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.archives == nil {
		t.archives = map[string]*archiveHandle{}
	}
	h := t.archives[name]
	want := bc != nil && p.On
	if h != nil {
		select {
		case <-h.done:
			h = nil // ended with its term or by itself: start again if wanted
		default:
			if want && h.spec == p && h.repo == bc.Spec.Repository {
				return
			}
			h.cancel()
			h = nil
		}
		delete(t.archives, name)
	}
	if !want {
		return
	}
	actx, cancel := context.WithCancel(ctx)
	h = &archiveHandle{cancel: cancel, done: make(chan struct{}), spec: p, repo: bc.Spec.Repository, backups: make(chan struct{}, 1)}
	t.archives[name] = h
	// The config's previous archive (stopped just now, or with an earlier
	// term) may still be in its last commit: the new one waits for it, so
	// two streams of one config never overlap.
	if a.archiveDone == nil {
		a.archiveDone = map[string]chan struct{}{}
	}
	prev := a.archiveDone[name]
	a.archiveDone[name] = h.done
	a.archiving.Add(1)
	go func() {
		defer a.archiving.Done()
		defer close(h.done)
		if prev != nil {
			select {
			case <-prev:
			case <-actx.Done():
				return
			}
		}
		a.archive(actx, name, h)
	}()
}

// backupDone tells the config's archive that a new full backup exists.
func (a *Agent) backupDone(config string) {
	t := a.cur()
	if t == nil {
		return
	}
	a.mu.Lock()
	h := t.archives[config]
	a.mu.Unlock()
	if h != nil {
		select {
		case h.backups <- struct{}{}:
		default:
		}
	}
}

// archive runs the config's archive until ctx ends, starting it again
// after each failure (the failure is in the BinlogArchiving condition).
func (a *Agent) archive(ctx context.Context, config string, h *archiveHandle) {
	log := a.log.With("config", config, "pitr", true)
	// Soon after a stream that was working (a database restart is over in
	// seconds, and what it writes meanwhile is only on the server), then
	// backing off to a minute.
	const first = time.Second
	wait := first
	for ctx.Err() == nil {
		progressed, err := a.archiveOnce(ctx, config, h, log)
		if ctx.Err() != nil {
			return
		}
		reason := "ArchiveFailed"
		if errors.Is(err, database.ErrBinlogRequirement) {
			reason = "ServerNotReady"
		}
		log.Warn("the binlog archive stopped; starting it again", "err", err.Error(), "in", wait.String())
		a.setArchiveCondition(ctx, config, false, reason, fmt.Sprintf("%v; retrying in %s", err, wait))
		if progressed {
			wait = first
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// archiveState is one stream's bookkeeping.
type archiveState struct {
	appBinding string
	archived   map[string]contract.BinlogVersion // newest version of each file
	scanners   map[string]*binlog.Scanner
	superseded []contract.BinlogVersion // committed over, still to forget
	gaps       []stashv1beta1.PITRGap
	coverFrom  time.Time // the archive holds every event since
	first      time.Time // the oldest full backup since coverFrom
	until      time.Time // the archive holds every event up to this
	behind     int       // commits in a row that found the stream behind the server
	commits    int
}

// appendGap adds a gap, keeping the newest maxGaps.
func appendGap(gaps []stashv1beta1.PITRGap, g stashv1beta1.PITRGap) []stashv1beta1.PITRGap {
	gaps = append(gaps, g)
	if len(gaps) > maxGaps {
		gaps = gaps[len(gaps)-maxGaps:]
	}
	return gaps
}

// archiveOnce checks the server, finds where the archive ends, streams
// from there and commits every interval, until the stream or ctx ends.
// progressed reports whether anything was committed.
func (a *Agent) archiveOnce(ctx context.Context, config string, h *archiveHandle, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) (progressed bool, err error) {
	bc, ok := a.config(a.cfg.Namespace + "/" + config)
	if !ok {
		return false, fmt.Errorf("BackupConfiguration %s is gone", config)
	}
	ab, conn, err := a.connection(ctx)
	if err != nil {
		return false, err
	}
	files, err := conn.WriteFiles(a.cfg.ScratchDir)
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(files.Dir)
	client, err := database.FindClient()
	if err != nil {
		return false, err
	}
	tool, err := database.FindBinlogTool(os.Getenv("PATH"))
	if err != nil {
		return false, fmt.Errorf("point-in-time recovery needs mariadb-binlog (or mysqlbinlog) in the agent's image: %w", err)
	}
	srv, err := client.BinlogStatus(ctx, files, a.childEnv(), conn.User)
	if err != nil {
		if !errors.Is(err, database.ErrBinlogRequirement) {
			err = dbError(ab, err)
		}
		return false, err
	}
	repo, rr, cleanup, err := a.openRepo(ctx, bc.Spec.Repository, true)
	if err != nil {
		return false, err
	}
	defer cleanup()
	snaps, err := rr.Snapshots(ctx, contract.BinlogHost, []string{contract.TagPITR, "appbinding=" + ab.Name})
	if errors.Is(err, restic.ErrRepoNotExist) {
		if _, err = a.initRepo(ctx, repo, rr); err == nil {
			snaps, err = nil, nil
		}
	}
	if err != nil {
		return false, repoErr(repo, err)
	}
	st := &archiveState{appBinding: ab.Name, archived: map[string]contract.BinlogVersion{}, scanners: map[string]*binlog.Scanner{}}
	if ps := bc.Status.PointInTimeRecovery; ps != nil {
		st.gaps = slices.Clone(ps.Gaps)
	}
	var versions []contract.BinlogVersion
	for _, s := range snaps {
		if v, ok := binlogVersion(s); ok {
			versions = append(versions, v)
		}
	}
	latest, superseded := contract.LatestVersions(versions)
	// Left by a run that stopped between a commit and its forget.
	st.superseded = superseded
	for _, v := range latest {
		st.archived[v.File] = v
	}
	start, gap := resumePoint(latest, srv.Files, a.clock())
	if gap != nil {
		st.gaps = appendGap(st.gaps, *gap)
		a.event(ctx, bc, corev1.EventTypeWarning, "BinlogGap", fmt.Sprintf("BackupConfiguration %s: the binlog archive has a gap from %s: %s; a restore to a time in it is refused, and the window starts again at the next full backup",
			config, gap.From.UTC().Format(time.RFC3339), gap.Reason))
		log.Warn("binlog archive gap", "from", gap.From.UTC().Format(time.RFC3339), "reason", gap.Reason)
		// Nothing before the gap is restorable onward; forget what the
		// archive held of files the server no longer has.
		st.archived = map[string]contract.BinlogVersion{}
	}
	st.coverFrom = coverFrom(st.archived, st.gaps)

	parent := filepath.Join(a.cfg.ScratchDir, "binlog")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return false, fmt.Errorf("scratch directory %s: %w", parent, err)
	}
	dir, err := os.MkdirTemp(parent, contract.ShortName(config, 60)+"-")
	if err != nil {
		return false, fmt.Errorf("scratch directory %s: %w", parent, err)
	}
	defer os.RemoveAll(dir)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	argv := database.StreamBinlogArgv(tool, files, dir, archiveServerID(a.cfg.Namespace, ab.Name, config), start)
	cmd := exec.CommandContext(sctx, argv[0], argv[1:]...)
	cmd.Env = append(a.childEnv(), files.Env...)
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start %s: %w", filepath.Base(tool), err)
	}
	var alive atomic.Bool
	alive.Store(true)
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		alive.Store(false)
		exited <- err
	}()
	defer func() {
		stop()
		<-exited
	}()
	log.Info("archiving the binlog", "from", start, "repository", repo.Name, "interval", h.spec.Interval.String())
	a.setArchiveCondition(ctx, config, true, "Archiving", fmt.Sprintf("streaming the binlog from %s into Repository %s, committed every %s", start, repo.Name, h.spec.Interval))
	st.first = a.firstRecoverable(ctx, rr, ab.Name, st.coverFrom)

	tick := time.NewTicker(h.spec.Interval)
	defer tick.Stop()
	// A commit runs to its end even when the agent stops meanwhile: what
	// the stream received is on this pod only.
	commit := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		n, err := a.commitArchive(cctx, client, files, rr, dir, st, alive.Load, log)
		if n > 0 {
			progressed = true
		}
		if err != nil {
			return err
		}
		if st.behind >= 3 {
			// Alive but not moving (a half-open connection): start again.
			return fmt.Errorf("the binlog stream fell behind the server at %d commits in a row: restarting it", st.behind)
		}
		if st.first.IsZero() && !st.coverFrom.IsZero() {
			st.first = a.firstRecoverable(cctx, rr, ab.Name, st.coverFrom)
		}
		a.reportArchive(cctx, bc, config, st)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			// What was received is committed before the agent lets go.
			_ = commit()
			return progressed, ctx.Err()
		case err := <-exited:
			exited <- err // for the deferred wait
			cerr := commit()
			why := strings.TrimSpace(stderr.String())
			if why == "" && err != nil {
				why = err.Error()
			}
			if strings.Contains(why, "REPLICATION SLAVE") || strings.Contains(why, "1227") {
				return progressed, fmt.Errorf("%w: user %s may not stream the binlog: run `GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '%s'@'%%'` (MySQL: REPLICATION SLAVE, REPLICATION CLIENT): %s",
					database.ErrBinlogRequirement, conn.User, conn.User, why)
			}
			return progressed, errors.Join(fmt.Errorf("the binlog stream ended: %s", why), cerr)
		case <-h.backups:
			// One listing of the backups serves the window and retention.
			if backups, err := rr.Snapshots(ctx, contract.BackupHost, []string{"appbinding=" + ab.Name}); err == nil {
				st.first = firstRecoverableOf(backups, st.coverFrom)
				a.retireArchive(ctx, rr, ab.Name, st, backups, log)
			}
		case <-tick.C:
			if err := commit(); err != nil {
				return progressed, err
			}
		}
	}
}

// binlogVersion reads an archived version from its snapshot. A snapshot
// whose content is not the size its tags claim (its restic outlived an
// agent killed mid-commit and stored what it had read) is not a version.
func binlogVersion(s restic.Snapshot) (contract.BinlogVersion, bool) {
	v, ok := contract.ParseBinlogVersion(s.ID, s.Tags)
	if ok && s.Summary != nil && int64(s.Summary.TotalBytesProcessed) != v.Size {
		return v, false
	}
	return v, ok
}

// resumePoint is the file to stream from: the newest archived one, again
// from its start, when the server still has it; else a gap, and the
// server's oldest file (or, for a first run, its newest).
func resumePoint(archived []contract.BinlogVersion, server []database.BinlogFile, now time.Time) (string, *stashv1beta1.PITRGap) {
	oldest, newest := server[0].Name, server[len(server)-1].Name
	if len(archived) == 0 {
		return newest, nil
	}
	last := archived[len(archived)-1]
	for _, f := range server {
		if f.Name == last.File {
			if f.Size < last.Size {
				return oldest, &stashv1beta1.PITRGap{From: metav1.NewTime(last.Committed), To: &metav1.Time{Time: now},
					Reason: fmt.Sprintf("the server's %s is shorter (%d bytes) than the archived one (%d): the server's binlog was reset", f.Name, f.Size, last.Size)}
			}
			return last.File, nil
		}
	}
	reason := fmt.Sprintf("binlog files after %s were purged on the server before they were archived (the server starts at %s)", last.File, oldest)
	if contract.BinlogLess(newest, last.File) {
		reason = fmt.Sprintf("the server's binlog starts again at %s, before the archived %s: a new server, or its binlog was reset", oldest, last.File)
	}
	return oldest, &stashv1beta1.PITRGap{From: metav1.NewTime(last.Committed), To: &metav1.Time{Time: now}, Reason: reason}
}

// coverFrom is the time from which the archive holds every event: the
// first event of its oldest file, or the end of the newest gap.
func coverFrom(archived map[string]contract.BinlogVersion, gaps []stashv1beta1.PITRGap) time.Time {
	var from time.Time
	var oldest string
	for name, v := range archived {
		if oldest == "" || contract.BinlogLess(name, oldest) {
			oldest, from = name, v.First
		}
	}
	for _, g := range gaps {
		if g.To != nil && g.To.After(from) {
			from = g.To.Time
		}
	}
	return from
}

// retireArchive forgets the archived binlog files that ended before the
// oldest full backup kept: no restore can start before that backup, so
// retention of the backups is retention of the archive. Their data goes
// with the next prune.
func (a *Agent) retireArchive(ctx context.Context, rr *restic.Repo, appBinding string, st *archiveState, backups []restic.Snapshot, log interface{ Warn(string, ...any) }) {
	if len(backups) == 0 {
		return
	}
	oldest := backups[0].Time
	for _, b := range backups {
		if b.Time.Before(oldest) {
			oldest = b.Time
		}
	}
	snaps, err := rr.Snapshots(ctx, contract.BinlogHost, []string{contract.TagPITR, "appbinding=" + appBinding})
	if err != nil {
		return
	}
	var old []contract.BinlogVersion
	for _, s := range snaps {
		if v, ok := binlogVersion(s); ok && retired(v, oldest) {
			old = append(old, v)
		}
	}
	if len(old) == 0 || !forgetVersions(ctx, rr, old, log) {
		return
	}
	for _, v := range old {
		if cur, ok := st.archived[v.File]; ok && retired(cur, oldest) {
			delete(st.archived, v.File)
		}
	}
}

// retired says a version's file ended before a backup at oldest began.
func retired(v contract.BinlogVersion, oldest time.Time) bool {
	return v.Closed && !v.Last.IsZero() && v.Last.Before(oldest)
}

// firstRecoverable is the oldest full backup the archive continues:
// taken at or after from. Zero when there is none yet.
func (a *Agent) firstRecoverable(ctx context.Context, rr *restic.Repo, appBinding string, from time.Time) time.Time {
	if from.IsZero() {
		return time.Time{}
	}
	backups, err := rr.Snapshots(ctx, contract.BackupHost, []string{"appbinding=" + appBinding})
	if err != nil {
		return time.Time{}
	}
	return firstRecoverableOf(backups, from)
}

// firstRecoverableOf is firstRecoverable over a listing of the backups.
// Only a backup that records its binlog position can be a base. The time
// is the first whole second a restore accepts with that base: the base
// must be baseMargin before the target, and status and metrics show whole
// seconds, so the second the backup began in is not in the window.
func firstRecoverableOf(backups []restic.Snapshot, from time.Time) time.Time {
	var first time.Time
	for _, s := range backups {
		if from.IsZero() || !slices.Contains(s.Tags, contract.TagBinlogCoordinates) || s.Time.Before(from) {
			continue
		}
		if first.IsZero() || s.Time.Before(first) {
			first = s.Time
		}
	}
	if first.IsZero() {
		return first
	}
	first = first.Add(baseMargin)
	if whole := first.Truncate(time.Second); whole.Before(first) {
		first = whole.Add(time.Second)
	}
	return first
}

// commitArchive commits each file that grew since its last version, up to
// its last whole event, and marks the archive complete up to the moment
// it had everything the server had written.
func (a *Agent) commitArchive(ctx context.Context, client database.Client, files *database.Files, rr *restic.Repo, dir string, st *archiveState, alive func() bool, log interface{ Warn(string, ...any) }) (int, error) {
	cut := a.clock()
	// Where the server's binlog ends now: once the stream has reached it,
	// the archive is complete up to cut.
	endFile, endPos, posErr := client.BinlogEnd(ctx, files, a.childEnv())
	var caught bool
	deadline := time.Now().Add(5 * time.Second)
	var names []string
	for {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return 0, err
		}
		names = names[:0]
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
		slices.SortFunc(names, func(x, y string) int {
			if contract.BinlogLess(x, y) {
				return -1
			}
			if contract.BinlogLess(y, x) {
				return 1
			}
			return 0
		})
		for _, name := range names {
			if err := st.scan(dir, name); err != nil {
				return 0, fmt.Errorf("read the streamed %s: %w", name, err)
			}
		}
		if posErr != nil || !alive() {
			break
		}
		if sc := st.scanners[endFile]; sc != nil && sc.Info.Size >= endPos {
			caught = true
			break
		}
		if endFile != "" && len(names) > 0 && contract.BinlogLess(endFile, names[len(names)-1]) {
			caught = true // the server rotated since: the stream is past endFile
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	n, closedOne := 0, false
	for i, name := range names {
		sc := st.scanners[name]
		prev := st.archived[name]
		info := sc.Info
		if !prev.First.IsZero() && !info.First.IsZero() && !info.First.Equal(prev.First) {
			// Same name, another file: the server's binlog was reset (or
			// it is another server). The old files stay archived under
			// their own start time; the archive goes on from this one.
			st.gaps = appendGap(st.gaps, stashv1beta1.PITRGap{From: metav1.NewTime(prev.Committed), To: &metav1.Time{Time: cut},
				Reason: fmt.Sprintf("the server's %s began at %s, the archived one at %s: its binlog was reset, or it is another server", name,
					info.First.UTC().Format(time.RFC3339), prev.First.UTC().Format(time.RFC3339))})
			st.archived = map[string]contract.BinlogVersion{}
			st.coverFrom, st.first = time.Time{}, time.Time{}
			prev = contract.BinlogVersion{}
		}
		if info.Size <= prev.Size && (info.Closed || i < len(names)-1) == prev.Closed {
			continue
		}
		// The stream moved on to a later file: the server sent all of this
		// one, even if it ends without a rotate (the server crashed).
		closed := info.Closed || i < len(names)-1
		// Committed claims completeness: the newest file's version claims
		// the cut only when the stream had caught up with the server then;
		// an older file's, its own last event.
		committed := info.Last
		if i == len(names)-1 {
			committed = st.until
			if caught {
				committed = cut
			}
		}
		v := contract.BinlogVersion{File: name, Size: info.Size, First: info.First, Last: info.Last, Committed: committed,
			FirstGTID: info.FirstGTID.String(), LastGTID: info.LastGTID.String(), Transactions: info.Transactions, Closed: closed}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return n, err
		}
		sum, err := rr.Backup(ctx, restic.BackupOptions{
			Host:          contract.BinlogHost,
			StdinFilename: strings.TrimPrefix(contract.BinlogFile(st.appBinding, name), "/"),
			Stdin:         io.NewSectionReader(f, 0, info.Size),
			Tags:          v.Tags(st.appBinding),
		})
		f.Close()
		if errors.Is(err, restic.ErrLocked) {
			// A prune holds the repository: the next commit catches up.
			log.Warn("the repository is locked; the binlog is committed at the next interval", "file", name)
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("commit %s to the repository: %w", name, err)
		}
		v.Snapshot = sum.SnapshotID
		if prev.Snapshot != "" {
			st.superseded = append(st.superseded, prev)
		}
		st.archived[name] = v
		n++
		closedOne = closedOne || closed
		if st.coverFrom.IsZero() {
			st.coverFrom = coverFrom(st.archived, st.gaps)
		}
		// A closed file the stream has left behind is kept in the
		// repository only.
		if closed && i < len(names)-1 {
			_ = os.Remove(filepath.Join(dir, name))
			delete(st.scanners, name)
		}
	}
	// Forgetting takes the repository's exclusive lock, which a backup or
	// a restore starting then would wait for: it is done once a file is
	// closed, or every 20 commits, not at each.
	if len(st.superseded) > 0 && (closedOne || st.commits%20 == 0) && forgetVersions(ctx, rr, st.superseded, log) {
		st.superseded = nil
	}
	if caught {
		st.until = cut
		st.behind = 0
	} else if alive() && posErr == nil {
		st.behind++
	}
	st.commits++
	return n, nil
}

// scan reads on in a streamed file.
func (st *archiveState) scan(dir, name string) error {
	sc := st.scanners[name]
	if sc == nil {
		sc = binlog.NewScanner(nil)
		st.scanners[name] = sc
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(sc.Info.Size, io.SeekStart); err != nil {
		return err
	}
	return sc.Continue(f)
}

// forgetVersions forgets superseded versions: each is a prefix of a newer
// one, whose data it shares. It reports success.
func forgetVersions(ctx context.Context, rr *restic.Repo, vs []contract.BinlogVersion, log interface{ Warn(string, ...any) }) bool {
	var ids []string
	for _, v := range vs {
		if v.Snapshot != "" {
			ids = append(ids, v.Snapshot)
		}
	}
	if len(ids) == 0 {
		return true
	}
	if err := rr.ForgetIDs(ctx, ids, false); err != nil {
		if !errors.Is(err, restic.ErrLocked) {
			log.Warn("could not forget superseded binlog versions; tried again later", "err", err.Error())
		}
		return false
	}
	return true
}

// reportArchive writes the archive's state to the config's status and
// metrics.
func (a *Agent) reportArchive(ctx context.Context, bc *stashv1beta1.BackupConfiguration, config string, st *archiveState) {
	var last contract.BinlogVersion
	var bytes int64
	var lastEvent time.Time
	for _, v := range st.archived {
		bytes += v.Size
		if last.File == "" || contract.BinlogLess(last.File, v.File) {
			last = v
		}
		if v.Last.After(lastEvent) {
			lastEvent = v.Last
		}
	}
	ps := stashv1beta1.PITRStatus{ArchivedBytes: bytes, Gaps: st.gaps, LastArchivedGTID: last.LastGTID}
	if last.File != "" {
		ps.LastArchivedPosition = fmt.Sprintf("%s:%d", last.File, last.Size)
	}
	if !lastEvent.IsZero() {
		ps.LastEventTime = &metav1.Time{Time: lastEvent}
	}
	if !st.first.IsZero() && !st.until.IsZero() {
		ps.FirstRecoverableTime = &metav1.Time{Time: st.first}
		// Whole seconds the archive holds: the one the cut fell in is not.
		ps.LastRecoverableTime = &metav1.Time{Time: st.until.Truncate(time.Second).Add(-time.Second)}
	}
	cond := metav1.Condition{Type: stashv1beta1.ConditionBinlogArchiving, Status: metav1.ConditionTrue, Reason: "Archiving",
		Message: fmt.Sprintf("the archive reaches %s (%s)", ps.LastArchivedPosition, st.until.UTC().Format(time.RFC3339))}
	if st.first.IsZero() {
		cond.Message += "; no full backup since the archive began, so the restorable window opens at the next backup"
	}
	// A gap the window has not yet moved past is a condition of its own.
	cont := metav1.Condition{Type: stashv1beta1.ConditionBinlogContinuous, Status: metav1.ConditionTrue, Reason: "NoGap",
		Message: "the archive has no gap in the restorable window"}
	if n := len(st.gaps); n > 0 {
		g := st.gaps[n-1]
		if st.first.IsZero() || g.To == nil || st.first.Before(g.To.Time) {
			to := "now"
			if g.To != nil {
				to = g.To.UTC().Format(time.RFC3339)
			}
			cont = metav1.Condition{Type: stashv1beta1.ConditionBinlogContinuous, Status: metav1.ConditionFalse, Reason: "Gap",
				Message: fmt.Sprintf("the archive has a gap from %s to %s: %s; restores into it are refused, and the window opens again at the next full backup", g.From.UTC().Format(time.RFC3339), to, g.Reason)}
		}
	}
	if err := a.updateConfigStatus(ctx, config, func(c *stashv1beta1.BackupConfiguration) {
		c.Status.PointInTimeRecovery = &ps
		meta.SetStatusCondition(&c.Status.Conditions, cond)
		meta.SetStatusCondition(&c.Status.Conditions, cont)
	}); err != nil {
		a.log.Info("could not write the archive's status", "config", config, "err", err.Error())
	}
	lag := time.Duration(0)
	if !st.until.IsZero() {
		lag = a.clock().Sub(st.until)
	}
	spec, _ := contract.ParsePITR(bc.Annotations)
	res := metrics.PITRResult{Common: a.common(bc), LastEventTime: lastEvent, RecoverableFrom: st.first, RecoverableUntil: st.until, Lag: lag, Gaps: len(st.gaps), ArchivedBytes: bytes, Interval: spec.Interval,
		GapInWindow: cont.Status == metav1.ConditionFalse}
	a.metrics.SetPITR(res)
	// Pushed too, so the archive's alerts work from the Pushgateway; not in
	// the archive's way.
	go a.push(context.WithoutCancel(ctx), bc, metrics.PITRRegistry(res)) // ctx ends with the commit
}

func (a *Agent) setArchiveCondition(ctx context.Context, config string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	if err := a.updateConfigStatus(ctx, config, func(c *stashv1beta1.BackupConfiguration) {
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: stashv1beta1.ConditionBinlogArchiving, Status: st, Reason: reason, Message: msg})
	}); err != nil {
		a.log.Info("could not write the archive's condition", "config", config, "err", err.Error())
	}
}

// archiveServerID is the replica server id of a config's stream: stable
// across restarts and takeovers, in the top half of the range, away from
// the small ids servers are usually given.
func archiveServerID(namespace, appBinding, config string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(namespace + "/" + appBinding + "/" + config))
	return h.Sum32() | 1<<31
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// binlogCoordinates adds --master-data=2 to a dump of a server that writes
// a binlog: the dump then carries, as a comment, the binlog file and offset
// of its consistent snapshot (MariaDB reads them inside the snapshot, with
// no global lock). Without a binlog the dump is made as before: the
// archive's condition says what is wrong, and full backups go on.
func (a *Agent) binlogCoordinates(ctx context.Context, client database.Client, f *database.Files, args []string, log interface{ Info(string, ...any) }) ([]string, bool) {
	for _, arg := range args {
		if strings.HasPrefix(arg, "--master-data") || strings.HasPrefix(arg, "--source-data") || strings.HasPrefix(arg, "--dump-slave") {
			return args, strings.HasPrefix(arg, "--master-data") || strings.HasPrefix(arg, "--source-data")
		}
	}
	if _, _, err := client.BinlogEnd(ctx, f, a.childEnv()); err != nil {
		log.Info("the dump records no binlog position: the server's binlog cannot be read", "err", err.Error())
		return args, false
	}
	return append(slices.Clone(args), "--master-data=2"), true
}
