package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/binlog"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// A restore to a point in time (the restore-at annotation, a time or
// "latest") restores the newest full backup before that time which records
// its binlog position, then replays the archived binlog from that position
// up to the time, as one stream over all the files (a temporary table that
// one file creates and the next uses survives). Everything that can refuse
// it is checked before the database is touched: the archive must hold the
// time, with no gap between the backup and it.

// replayPlan is a replay settled before the database is touched.
// baseMargin is the least a restore's base backup must precede its
// target: the dump's consistent point comes a moment after restic's
// snapshot time. The restorable window starts this far after its backup.
const baseMargin = time.Second

type replayPlan struct {
	target   string    // as asked: RFC 3339 or "latest"
	stop     time.Time // the first second not replayed; zero: to the end
	source   string    // the AppBinding whose archive is replayed
	database string    // replay only this database's events ("": all)
	versions []contract.BinlogVersion
	gtid     *gtidStop // a replay to a transaction, in place of stop
	allowGap bool      // cross gaps in the archive instead of refusing
	crossed  []string  // the gaps an allowed replay crosses, described
}

// pickPointInTime picks the base snapshot of a restore-at restore and, when
// the source has a binlog archive, the replay. Without an archive it is the
// plain restore of the newest snapshot at or before the time (plan nil).
func (a *Agent) pickPointInTime(ctx context.Context, rr *restic.Repo, rs *stashv1beta1.RestoreSession, w snapshotWant) (restic.Snapshot, *replayPlan, error) {
	notChanged := "(the database was not changed)"
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalid, fmt.Sprintf(format, args...), notChanged)
	}
	var at time.Time
	target := w.at
	switch {
	case w.gtid != "" && w.at != "":
		return restic.Snapshot{}, nil, invalid("annotations %s and %s both ask for a point: keep one", contract.AnnotationRestoreAt, contract.AnnotationRestoreToGTID)
	case w.gtid != "":
		if _, _, _, err := contract.ParseGTID(w.gtid); err != nil {
			return restic.Snapshot{}, nil, invalid("annotation %s: %v", contract.AnnotationRestoreToGTID, err)
		}
		target = "gtid:" + w.gtid
		if w.exclusive {
			target += " (exclusive)"
		}
	case w.at != contract.Latest:
		t, err := time.Parse(time.RFC3339, w.at)
		if err != nil {
			return restic.Snapshot{}, nil, invalid("annotation %s=%q is neither an RFC 3339 time nor latest", contract.AnnotationRestoreAt, w.at)
		}
		at = t
	}
	snaps, err := rr.Snapshots(ctx, w.host, nil)
	if err != nil {
		return restic.Snapshot{}, nil, fmt.Errorf("list snapshots of Repository %s %s: %w", rs.Spec.Repository.Name, notChanged, err)
	}
	archived, err := rr.Snapshots(ctx, contract.BinlogHost, []string{contract.TagPITR})
	if err != nil {
		return restic.Snapshot{}, nil, fmt.Errorf("list the binlog archive of Repository %s %s: %w", rs.Spec.Repository.Name, notChanged, err)
	}
	bySource := map[string][]contract.BinlogVersion{}
	for _, s := range archived {
		if v, ok := binlogVersion(s); ok {
			src := tagValue(s.Tags, "appbinding")
			bySource[src] = append(bySource[src], v)
		}
	}
	slices.SortStableFunc(snaps, func(x, y restic.Snapshot) int { return y.Time.Compare(x.Time) }) // newest first

	// A GTID is found in the archive first: its time chooses the base.
	var stop *gtidStop
	if w.gtid != "" {
		if stop, err = a.findGTID(ctx, rr, snaps, bySource, w.gtid, w.exclusive); err != nil {
			return restic.Snapshot{}, nil, fmt.Errorf("%w %s", err, notChanged)
		}
		at = stop.at
	}
	// The base's snapshot is taken a moment after restic's snapshot time:
	// a backup well before the target is preferred, so the base surely
	// holds nothing after it; replay checks it all the same.
	pick := func(margin time.Duration) (*restic.Snapshot, *replayPlan, error) {
		for i := range snaps {
			s := snaps[i]
			if !at.IsZero() && s.Time.After(at.Add(-margin)) {
				continue
			}
			src := tagValue(s.Tags, "appbinding")
			if len(bySource[src]) == 0 || !slices.Contains(s.Tags, contract.TagBinlogCoordinates) || (stop != nil && stop.source != src) {
				continue
			}
			latest, _ := contract.LatestVersions(bySource[src])
			plan := &replayPlan{target: target, source: src, versions: latest, gtid: stop, allowGap: w.allowGap}
			switch scope := tagValue(s.Tags, "scope"); {
			case scope == "partial":
				return nil, nil, invalid("snapshot %s dumps several databases, or some tables of one, and the binlog cannot be replayed onto just those: point-in-time recovery works with a dump of every database (the default) or of one whole database", shortID(s.ID))
			case strings.HasPrefix(scope, "db:"):
				plan.database = strings.TrimPrefix(scope, "db:")
			}
			if stop == nil && !at.IsZero() {
				plan.stop = at.Truncate(time.Second).Add(time.Second)
			}
			if err := plan.check(s.Time, at); err != nil {
				return nil, nil, fmt.Errorf("%w: %v %s", ErrInvalid, err, notChanged)
			}
			// The base's position, from its dump's head, is checked against
			// the archive now, before the database is touched.
			if err := plan.checkStart(ctx, rr, s); err != nil {
				return nil, nil, fmt.Errorf("%w: %v %s", ErrInvalid, err, notChanged)
			}
			return &s, plan, nil
		}
		return nil, nil, nil
	}
	for _, margin := range []time.Duration{5 * time.Minute, baseMargin} {
		if at.IsZero() && margin > time.Second {
			continue
		}
		s, plan, err := pick(margin)
		if err != nil {
			return restic.Snapshot{}, nil, err
		}
		if s != nil {
			return *s, plan, nil
		}
	}
	var plain *restic.Snapshot
	for i := range snaps {
		if at.IsZero() || !snaps[i].Time.After(at) {
			plain = &snaps[i]
			break
		}
	}
	if plain == nil {
		when := "at or before " + target
		if at.IsZero() {
			when = "at all"
		}
		return restic.Snapshot{}, nil, invalid("Repository %s has no snapshot %s%s: list them with `kubectl stash snapshots %s`", rs.Spec.Repository.Name, when, hostNote(w.host), rs.Spec.Repository.Name)
	}
	if src := tagValue(plain.Tags, "appbinding"); len(bySource[src]) > 0 {
		return restic.Snapshot{}, nil, invalid("Repository %s archives the binlog of %s, but no full backup %s records its binlog position (backups record it once point-in-time recovery is on): take a backup with `kubectl stash trigger`, or restore a snapshot by ID",
			rs.Spec.Repository.Name, src, map[bool]string{true: "at all", false: "before " + target}[at.IsZero()])
	}
	if at.IsZero() || stop != nil {
		return restic.Snapshot{}, nil, invalid("%s replays the binlog archive, and Repository %s has none for this database: turn point-in-time recovery on (annotation %s), or restore --snapshot latest",
			target, rs.Spec.Repository.Name, contract.AnnotationPITR)
	}
	return *plain, nil, nil
}

// gtidStop is where a replay to a transaction ends: in file, before the
// event at offset (0: at the file's end).
type gtidStop struct {
	source string
	file   string
	offset int64
	target int64     // the transaction's own offset in file
	at     time.Time // the transaction's time
}

// findGTID finds a transaction in the archive: the version whose GTID range
// holds it is fetched and scanned for the transaction's offset and time,
// and for the next transaction's offset (where an inclusive replay stops).
func (a *Agent) findGTID(ctx context.Context, rr *restic.Repo, snaps []restic.Snapshot, bySource map[string][]contract.BinlogVersion, gtid string, exclusive bool) (*gtidStop, error) {
	domain, server, seq, _ := contract.ParseGTID(gtid)
	inRange := func(v contract.BinlogVersion) bool {
		d1, _, s1, err1 := contract.ParseGTID(v.FirstGTID)
		d2, _, s2, err2 := contract.ParseGTID(v.LastGTID)
		return err1 == nil && err2 == nil && d1 == domain && d2 == domain && s1 <= seq && seq <= s2
	}
	seen := map[string]bool{}
	for _, s := range snaps { // the newest backups' sources first
		src := tagValue(s.Tags, "appbinding")
		if seen[src] {
			continue
		}
		seen[src] = true
		latest, _ := contract.LatestVersions(bySource[src])
		for _, v := range latest {
			if !inRange(v) {
				continue
			}
			dir, err := os.MkdirTemp(a.cfg.ScratchDir, "gtid-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			path := filepath.Join(dir, v.File)
			if err := fetchVersion(ctx, rr, src, v, path); err != nil {
				return nil, fmt.Errorf("read %s from the binlog archive: %w", v.File, err)
			}
			stop := &gtidStop{source: src, file: v.File}
			found := false
			sc := binlog.NewScanner(func(g binlog.GTID, at time.Time, off int64) {
				switch {
				case found && stop.offset == 0 && !exclusive:
					stop.offset = off // the next transaction
				case !found && g.Domain == domain && g.Server == server && g.Seq == seq:
					found, stop.at, stop.target = true, at, off
					if exclusive {
						stop.offset = off
					}
				}
			})
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			err = sc.Continue(f)
			f.Close()
			if err != nil {
				return nil, err
			}
			if found {
				return stop, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: transaction %s is not in the binlog archive of this Repository: `kubectl get backupconfiguration -o yaml` shows the last archived GTID", ErrInvalid, gtid)
}

// errHeadRead stops a dump once its head is read.
var errHeadRead = errors.New("head read")

// headWriter keeps the first max bytes, then stops the dump.
type headWriter struct {
	b   []byte
	max int
}

func (h *headWriter) Write(p []byte) (int, error) {
	room := h.max - len(h.b)
	if room <= 0 {
		return 0, errHeadRead
	}
	h.b = append(h.b, p[:min(room, len(p))]...)
	if len(p) > room {
		return room, errHeadRead
	}
	return len(p), nil
}

// checkStart reads the base dump's binlog position and checks that the
// archive holds it and every file from it to the target.
func (p *replayPlan) checkStart(ctx context.Context, rr *restic.Repo, base restic.Snapshot) error {
	file := ""
	if len(base.Paths) > 0 {
		file = base.Paths[0]
	}
	h := &headWriter{max: 256 << 10}
	if err := rr.Dump(ctx, base.ID, file, h); err != nil && len(h.b) < h.max && !errors.Is(err, errHeadRead) {
		if len(h.b) == 0 {
			return fmt.Errorf("read the head of snapshot %s: %w", shortID(base.ID), err)
		}
	}
	startFile, startPos, ok := dumpPosition(h.b)
	if !ok {
		return fmt.Errorf("snapshot %s records no binlog position in its head", shortID(base.ID))
	}
	i0 := -1
	for i, v := range p.versions {
		if v.File == startFile && !v.First.After(base.Time) {
			i0 = i
		}
	}
	if i0 < 0 {
		return fmt.Errorf("the binlog archive of %s does not hold %s, where snapshot %s starts (%s:%d): the archive began after it, or lost it",
			p.source, startFile, shortID(base.ID), startFile, startPos)
	}
	if startPos > p.versions[i0].Size && i0 == len(p.versions)-1 {
		return fmt.Errorf("the binlog archive of %s holds %s up to %d, before the position of snapshot %s (%d): wait for the archive's next commit",
			p.source, startFile, p.versions[i0].Size, shortID(base.ID), startPos)
	}
	for i := i0 + 1; i < len(p.versions); i++ {
		prev, v := p.versions[i-1], p.versions[i]
		if p.gtid == nil && !p.stop.IsZero() && !v.First.Before(p.stop) {
			break // past the target
		}
		if (!prev.Closed || !contract.NextBinlog(prev.File, v.File)) && (p.stop.IsZero() || prev.Last.Before(p.stop)) && !p.allowGap {
			return fmt.Errorf("the binlog archive of %s has a gap after %s, between snapshot %s and the target", p.source, prev.File, shortID(base.ID))
		}
		if p.gtid != nil && v.File == p.gtid.file {
			break
		}
	}
	return nil
}

// pointAnnotations rejects restore annotations that would otherwise be
// ignored: a flag that is neither true nor false, or one whose restore
// does not replay (an exclusive flag without a GTID, a gap allowed where
// nothing is replayed).
func pointAnnotations(ann map[string]string) error {
	point := ann[contract.AnnotationRestoreAt] != "" || ann[contract.AnnotationRestoreToGTID] != ""
	for _, f := range []struct {
		name, needs string
		ok          bool
	}{
		{contract.AnnotationRestoreGTIDExclusive, contract.AnnotationRestoreToGTID + ", the transaction to stop at", ann[contract.AnnotationRestoreToGTID] != ""},
		{contract.AnnotationRestoreAllowGap, contract.AnnotationRestoreAt + " or " + contract.AnnotationRestoreToGTID + ": only a replay crosses a gap", point},
		{contract.AnnotationRestoreReadOnly, "", true},
	} {
		v, set := ann[f.name]
		switch {
		case !set:
		case v != "true" && v != "false":
			return fmt.Errorf("%w: annotation %s=%q: want \"true\" or \"false\" (the database was not changed)", ErrInvalid, f.name, v)
		case !f.ok:
			return fmt.Errorf("%w: annotation %s needs %s (the database was not changed)", ErrInvalid, f.name, f.needs)
		}
	}
	return nil
}

// holdsReadOnly says whether a restore holds its target read-only: as the
// annotation says, else when it replays the binlog.
func holdsReadOnly(ann map[string]string, replays bool) bool {
	if v, ok := ann[contract.AnnotationRestoreReadOnly]; ok {
		return v == "true"
	}
	return replays
}

// check refuses a replay the archive cannot do: a gap between the base
// and the target (or the end, for latest), or a target past the archive.
func (p *replayPlan) check(base, at time.Time) error {
	vs := p.versions
	// The file the base's position is in: the newest one begun by then.
	i0 := 0
	for i, v := range vs {
		if !v.First.IsZero() && !v.First.After(base) {
			i0 = i
		}
	}
	for i := i0 + 1; i < len(vs); i++ {
		if !vs[i-1].Closed || !contract.NextBinlog(vs[i-1].File, vs[i].File) {
			// The archive holds every event up to the last one before the hole.
			if !at.IsZero() && !at.After(vs[i-1].Last) {
				break
			}
			gap := fmt.Sprintf("after %s: archived up to %s, events missing until %s", vs[i-1].File, vs[i-1].Last.UTC().Format(time.RFC3339), vs[i].First.UTC().Format(time.RFC3339))
			if !p.allowGap {
				return fmt.Errorf("the binlog archive of %s has a gap %s: restore to %s or earlier, or replay across the gap with --allow-gap (annotation %s: \"true\"), knowing its events are lost",
					p.source, gap, vs[i-1].Last.UTC().Format(time.RFC3339), contract.AnnotationRestoreAllowGap)
			}
			p.crossed = append(p.crossed, gap)
		}
	}
	last := vs[len(vs)-1]
	// Committed is when the archive had everything the server had written
	// (zero when it never caught up): the whole second at must be before it.
	if !at.IsZero() && at.Truncate(time.Second).Add(time.Second).After(last.Committed) {
		return fmt.Errorf("the binlog archive of %s reaches %s, before %s: restore to an earlier time, or wait for the archive (it commits every interval)",
			p.source, last.Committed.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	return nil
}

func tagValue(tags []string, key string) string {
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, key+"="); ok {
			return v
		}
	}
	return ""
}

// headCopy keeps the first bytes written through it.
type headCopy struct {
	w    io.Writer
	head []byte
	max  int
}

func (h *headCopy) Write(p []byte) (int, error) {
	if room := h.max - len(h.head); room > 0 {
		h.head = append(h.head, p[:min(room, len(p))]...)
	}
	return h.w.Write(p)
}

var masterData = regexp.MustCompile(`(?m)^-- CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+);`)

// dumpPosition reads the binlog position --master-data=2 wrote in a dump's head.
func dumpPosition(head []byte) (string, int64, bool) {
	m := masterData.FindSubmatch(head)
	if m == nil {
		return "", 0, false
	}
	n, err := strconv.ParseInt(string(m[2]), 10, 64)
	return string(m[1]), n, err == nil
}

// replay applies the plan on top of the restored base: the archived files
// from the base's position, decoded by mariadb-binlog as one stream, into
// the mysql client. It counts the transactions it sends and checks them
// against what the files hold before the stop.
func (a *Agent) replay(ctx context.Context, rr *restic.Repo, plan *replayPlan, head []byte, client database.Client, dbFiles *database.Files, args []string) (*stashv1beta1.PITRRestoreStatus, error) {
	state := "the database holds the base snapshot, with none of the binlog replayed"
	startFile, startPos, ok := dumpPosition(head)
	if !ok {
		return nil, fmt.Errorf("the base snapshot records no binlog position, so nothing was replayed (%s)", state)
	}
	st := &stashv1beta1.PITRRestoreStatus{Target: plan.target, StartPosition: fmt.Sprintf("%s:%d", startFile, startPos), GapsCrossed: plan.crossed}
	var files []contract.BinlogVersion
	for _, v := range plan.versions {
		if v.File == startFile || (len(files) > 0 && (plan.stop.IsZero() || v.First.Before(plan.stop))) {
			files = append(files, v)
		}
		if g := plan.gtid; g != nil && len(files) > 0 && v.File == g.file {
			break // the transaction's file is the last
		}
	}
	if g := plan.gtid; g != nil && (len(files) == 0 || files[len(files)-1].File != g.file || (g.file == startFile && startPos > g.target)) {
		return st, fmt.Errorf("the base snapshot starts at %s, after transaction %s (%s:%d), so nothing was replayed (%s, which may hold transactions after the one asked for): restore from an older backup by ID",
			st.StartPosition, plan.target, g.file, g.target, state)
	}
	if len(files) == 0 {
		return st, fmt.Errorf("the base snapshot starts at %s, which the binlog archive of %s does not hold, so nothing was replayed (%s)", st.StartPosition, plan.source, state)
	}
	for i := 1; i < len(files) && !plan.allowGap; i++ {
		if !contract.NextBinlog(files[i-1].File, files[i].File) {
			return st, fmt.Errorf("the binlog archive of %s has a gap between %s and %s, so nothing was replayed (%s)", plan.source, files[i-1].File, files[i].File, state)
		}
	}
	tool, err := database.FindBinlogTool(os.Getenv("PATH"))
	if err != nil {
		return st, fmt.Errorf("a point-in-time restore needs mariadb-binlog in the agent's image (%s): %w", state, err)
	}
	dir, err := os.MkdirTemp(a.cfg.ScratchDir, "replay-")
	if err != nil {
		return st, err
	}
	defer os.RemoveAll(dir)
	// Fetch, and count what the replay must apply: every transaction from
	// the start position to the first event at or after the stop.
	var paths []string
	want := 0
	stopped, ahead := false, false
	for _, v := range files {
		path := filepath.Join(dir, v.File)
		if err := fetchVersion(ctx, rr, plan.source, v, path); err != nil {
			return st, fmt.Errorf("read %s from the binlog archive (%s): %w", v.File, state, err)
		}
		paths = append(paths, path)
		if stopped {
			continue
		}
		from := int64(0)
		if v.File == startFile {
			from = startPos
		}
		last := plan.gtid != nil && v.File == plan.gtid.file
		sc := binlog.NewScanner(func(g binlog.GTID, at time.Time, off int64) {
			if off < from {
				if !plan.stop.IsZero() && !at.Before(plan.stop) {
					ahead = true // the base already holds a transaction after the target
				}
				return
			}
			if stopped {
				return
			}
			if (!plan.stop.IsZero() && !at.Before(plan.stop)) || (last && plan.gtid.offset > 0 && off >= plan.gtid.offset) {
				stopped = true
				return
			}
			want++
			if st.FirstEventTime == nil {
				st.FirstEventTime, st.FirstGTID = &metav1.Time{Time: at}, g.String()
			}
			st.LastEventTime, st.LastGTID = &metav1.Time{Time: at}, g.String()
		})
		f, err := os.Open(path)
		if err != nil {
			return st, err
		}
		err = sc.Continue(f)
		f.Close()
		if err != nil {
			return st, fmt.Errorf("read the archived %s (%s): %w", v.File, state, err)
		}
	}
	st.Files = len(paths)
	if ahead {
		return st, fmt.Errorf("the base snapshot %s already holds transactions stamped after %s, so nothing was replayed (%s, which is later than asked): restore from an older backup by ID, or to a later time",
			st.StartPosition, plan.target, state)
	}

	// mariadb-binlog | (count) | mysql: no shell.
	var stopPos int64
	if plan.gtid != nil {
		stopPos = plan.gtid.offset
	}
	decArgv := database.ReplayBinlogArgv(tool, startPos, plan.stop, stopPos, plan.database, paths)
	dec := exec.CommandContext(ctx, decArgv[0], decArgv[1:]...)
	dec.Env = append(a.childEnv(), "TZ=UTC")
	decErr := &tailBuffer{max: 4 << 10}
	dec.Stderr = decErr
	out, err := dec.StdoutPipe()
	if err != nil {
		return st, err
	}
	argv := client.LoadArgv(dbFiles, args)
	load := exec.CommandContext(ctx, argv[0], argv[1:]...)
	load.Env = append(append([]string{"HOME=" + dbFiles.Dir}, a.childEnv()...), dbFiles.Env...)
	loadErr := &tailBuffer{max: 8 << 10}
	load.Stderr = loadErr
	in, err := load.StdinPipe()
	if err != nil {
		return st, err
	}
	if err := load.Start(); err != nil {
		return st, fmt.Errorf("start mysql: %w", err)
	}
	if err := dec.Start(); err != nil {
		_ = in.Close()
		_ = load.Wait()
		return st, fmt.Errorf("start %s: %w", filepath.Base(tool), err)
	}
	sent, copyErr := countTransactions(out, in)
	_ = in.Close()
	if copyErr != nil {
		_ = dec.Process.Kill() // nobody reads its output any more
	}
	decWait := dec.Wait()
	loadWait := load.Wait()
	st.Transactions = sent
	partial := "the database holds the base snapshot and part of the binlog: restore again into an empty database"
	switch {
	case loadWait != nil:
		return st, fmt.Errorf("the replay failed in mysql (%s): %s: %w", partial, strings.TrimSpace(loadErr.String()), loadWait)
	case decWait != nil:
		return st, fmt.Errorf("%s failed (%s): %s: %w", filepath.Base(tool), partial, strings.TrimSpace(decErr.String()), decWait)
	case copyErr != nil:
		return st, fmt.Errorf("the replay stream broke (%s): %w", partial, copyErr)
	case sent != want:
		return st, fmt.Errorf("the replay sent %d transactions where the archive holds %d before the stop (%s)", sent, want, partial)
	}
	return st, nil
}

// countTransactions copies mariadb-binlog's SQL to mysql and counts the
// transactions in it: one gtid_seq_no setting per transaction.
func countTransactions(r io.Reader, w io.Writer) (int, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	bw := bufio.NewWriterSize(w, 256<<10)
	n := 0
	marker := []byte("SET @@session.gtid_seq_no=")
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if bytes.Contains(line, marker) {
				n++
			}
			if _, werr := bw.Write(line); werr != nil {
				return n, werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return n, bw.Flush()
		default:
			return n, err
		}
	}
}

// fetchVersion writes an archived version of a binlog file to path.
func fetchVersion(ctx context.Context, rr *restic.Repo, source string, v contract.BinlogVersion, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = rr.Dump(ctx, v.Snapshot, contract.BinlogFile(source, v.File), f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() != v.Size {
		return fmt.Errorf("the archived %s is %d bytes, its tags say %d", v.File, st.Size(), v.Size)
	}
	return nil
}

// holdReadOnly makes the target refuse every other client's writes and
// returns what lets go: it puts read_only back as it was, records both in
// the TargetReadOnly condition, and turns a restore that could not let go
// into a failure that says so (every application would stay refused).
func (a *Agent) holdReadOnly(ctx context.Context, run *restoreRun, client database.Client, dbFiles *database.Files, user string) (func(error) error, error) {
	notChanged := "(the database was not changed)"
	how := fmt.Sprintf("annotation %s: \"false\" (restore --read-only=false) lets others write during the restore", contract.AnnotationRestoreReadOnly)
	was, err := client.HoldReadOnly(ctx, dbFiles, a.childEnv(), user)
	if err != nil {
		return nil, fmt.Errorf("could not hold the target read-only, as this restore does so that nothing else writes until it ends: %w; when nothing else writes to it, %s %s", err, how, notChanged)
	}
	from := a.clock()
	cond := func(st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&run.conds, metav1.Condition{Type: stashv1beta1.ConditionTargetReadOnly, Status: st, Reason: reason, Message: msg})
	}
	if was {
		return func(err error) error {
			cond(metav1.ConditionTrue, "AlreadyReadOnly", "the server was read-only before the restore, and is left so")
			return err
		}, nil
	}
	a.log.Info("holding the target read-only for the restore", "restore", run.rs.Name)
	return func(err error) error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if rerr := client.SetReadOnly(rctx, dbFiles, a.childEnv(), false); rerr != nil {
			msg := fmt.Sprintf("the server is left read-only, refusing every application's writes: run `SET GLOBAL read_only=OFF` on it (%v)", rerr)
			cond(metav1.ConditionFalse, "StillReadOnly", msg)
			if err == nil {
				return fmt.Errorf("the restore completed, but %s", msg)
			}
			return fmt.Errorf("%w; and %s", err, msg)
		}
		cond(metav1.ConditionTrue, "Released", fmt.Sprintf("other clients' writes were refused from %s for %s, then read_only was set back to OFF",
			from.UTC().Format(time.RFC3339), a.clock().Sub(from).Round(time.Second)))
		return err
	}, nil
}
