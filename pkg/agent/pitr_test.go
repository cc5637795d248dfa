package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

func TestResumePoint(t *testing.T) {
	now := time.Unix(1000, 0)
	srv := []database.BinlogFile{{Name: "m.000004", Size: 900}, {Name: "m.000005", Size: 300}}
	v := func(file string, size int64) contract.BinlogVersion {
		return contract.BinlogVersion{File: file, Size: size, Committed: time.Unix(900, 0)}
	}
	for _, c := range []struct {
		name     string
		archived []contract.BinlogVersion
		start    string
		gap      string
	}{
		{"first run: the server's current file", nil, "m.000005", ""},
		{"resume: the newest archived file again", []contract.BinlogVersion{v("m.000003", 10), v("m.000004", 500)}, "m.000004", ""},
		{"purged before archived", []contract.BinlogVersion{v("m.000002", 10)}, "m.000004", "purged"},
		{"a new server", []contract.BinlogVersion{v("m.000009", 10)}, "m.000004", "starts again"},
		{"a reset file", []contract.BinlogVersion{v("m.000005", 800)}, "m.000004", "reset"},
	} {
		start, gap := resumePoint(c.archived, srv, now)
		if start != c.start {
			t.Errorf("%s: start %s, want %s", c.name, start, c.start)
		}
		switch {
		case c.gap == "" && gap != nil:
			t.Errorf("%s: unexpected gap %+v", c.name, gap)
		case c.gap != "" && (gap == nil || !strings.Contains(gap.Reason, c.gap) || !gap.From.Time.Equal(time.Unix(900, 0))):
			t.Errorf("%s: gap %+v, want one from the last commit saying %q", c.name, gap, c.gap)
		}
	}
}

func TestReplayPlanRefusesGapsAndTimesPastTheArchive(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(s, 0) }
	vs := []contract.BinlogVersion{
		{File: "m.000001", First: at(100), Last: at(199), Committed: at(200), Closed: true},
		{File: "m.000002", First: at(200), Last: at(299), Committed: at(300), Closed: true},
		{File: "m.000004", First: at(400), Last: at(450), Committed: at(500)}, // 000003 never archived
	}
	p := &replayPlan{source: "db", versions: vs}
	if err := p.check(at(150), at(250)); err != nil {
		t.Errorf("a target before the gap: %v", err)
	}
	if err := p.check(at(150), at(420)); err == nil || !strings.Contains(err.Error(), "gap after m.000002") {
		t.Errorf("a target past the gap: %v", err)
	}
	if err := p.check(at(150), time.Time{}); err == nil {
		t.Error("latest across a gap was accepted")
	}
	if err := p.check(at(410), at(490)); err != nil {
		t.Errorf("a base after the gap: %v", err)
	}
	if err := p.check(at(410), at(600)); err == nil || !strings.Contains(err.Error(), "reaches") {
		t.Errorf("a target past the archive: %v", err)
	}
}

func TestDumpPositionAndTransactionCount(t *testing.T) {
	head := []byte("-- MariaDB dump\n--\n-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000007', MASTER_LOG_POS=1542;\n")
	if f, p, ok := dumpPosition(head); !ok || f != "mysql-bin.000007" || p != 1542 {
		t.Errorf("dumpPosition: %s %d %v", f, p, ok)
	}
	if _, _, ok := dumpPosition([]byte("-- MariaDB dump\nCREATE TABLE t (a INT);\n")); ok {
		t.Error("a dump without --master-data has a position")
	}
	sql := "/*!100001 SET @@session.gtid_seq_no=8*//*!*/;\nBEGIN\n/*!*/;\nCOMMIT/*!*/;\n/*!100001 SET @@session.gtid_seq_no=9*//*!*/;\n" + strings.Repeat("x", 300<<10) + "\n"
	var out strings.Builder
	n, err := countTransactions(strings.NewReader(sql), &out)
	if err != nil || n != 2 || out.String() != sql {
		t.Errorf("countTransactions: %d, %v, copied %d of %d bytes", n, err, out.Len(), len(sql))
	}
}

func TestRetiredFilesEndedBeforeTheOldestBackup(t *testing.T) {
	oldest := time.Unix(1000, 0)
	for _, c := range []struct {
		v    contract.BinlogVersion
		want bool
	}{
		{contract.BinlogVersion{File: "m.1", Last: time.Unix(900, 0), Closed: true}, true},
		{contract.BinlogVersion{File: "m.2", Last: time.Unix(900, 0)}, false},                // still written: it holds what comes next
		{contract.BinlogVersion{File: "m.3", Last: time.Unix(1000, 0), Closed: true}, false}, // may hold the backup's position
		{contract.BinlogVersion{File: "m.4", Closed: true}, false},                           // no event time known
	} {
		if got := retired(c.v, oldest); got != c.want {
			t.Errorf("%+v: retired %v, want %v", c.v, got, c.want)
		}
	}
}

func TestPointAnnotationsAreHonouredOrRejected(t *testing.T) {
	for _, c := range []struct {
		ann map[string]string
		bad string
	}{
		{nil, ""},
		{map[string]string{contract.AnnotationRestoreToGTID: "0-1-5", contract.AnnotationRestoreGTIDExclusive: "true"}, ""},
		{map[string]string{contract.AnnotationRestoreToGTID: "0-1-5", contract.AnnotationRestoreGTIDExclusive: "yes"}, `want "true" or "false"`},
		{map[string]string{contract.AnnotationRestoreGTIDExclusive: "true"}, "needs " + contract.AnnotationRestoreToGTID},
		{map[string]string{contract.AnnotationRestoreAt: "latest", contract.AnnotationRestoreAllowGap: "true"}, ""},
		{map[string]string{contract.AnnotationRestoreAllowGap: "true"}, "only a replay crosses a gap"},
		{map[string]string{contract.AnnotationRestoreAt: "latest", contract.AnnotationRestoreAllowGap: "1"}, `want "true" or "false"`},
		{map[string]string{contract.AnnotationRestoreReadOnly: "true"}, ""},
		{map[string]string{contract.AnnotationRestoreReadOnly: "no"}, `want "true" or "false"`},
	} {
		err := pointAnnotations(c.ann)
		if (c.bad == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%v: %v, want %q", c.ann, err, c.bad)
		}
	}
	if _, _, _, err := contract.ParseGTID("0-1"); err == nil {
		t.Error("a GTID of two parts was accepted")
	}
	if d, s, n, err := contract.ParseGTID("2-7-4711"); err != nil || d != 2 || s != 7 || n != 4711 {
		t.Errorf("ParseGTID: %d %d %d %v", d, s, n, err)
	}
}

func TestReadOnlyByDefaultOnlyForAReplay(t *testing.T) {
	if !holdsReadOnly(nil, true) || holdsReadOnly(nil, false) {
		t.Error("default: a replay holds the target read-only, a plain restore does not")
	}
	if holdsReadOnly(map[string]string{contract.AnnotationRestoreReadOnly: "false"}, true) || !holdsReadOnly(map[string]string{contract.AnnotationRestoreReadOnly: "true"}, false) {
		t.Error("the annotation is not honoured")
	}
}

// A gap is refused with the way round it; allowed, it is crossed and named.
func TestReplayAcrossAGapOnlyWhenAllowed(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(1_800_000_000+s, 0) }
	vs := []contract.BinlogVersion{
		{File: "mysql-bin.000001", First: at(0), Last: at(100), Committed: at(101)}, // not closed: the stream lost it
		{File: "mysql-bin.000004", First: at(200), Last: at(300), Committed: at(301), Closed: true},
		{File: "mysql-bin.000005", First: at(300), Last: at(400), Committed: at(401)},
	}
	p := &replayPlan{source: "db", versions: vs}
	if err := p.check(at(10), at(50)); err != nil {
		t.Errorf("a target before the gap: %v", err)
	}
	err := p.check(at(10), time.Time{})
	if err == nil || !strings.Contains(err.Error(), "gap after mysql-bin.000001") || !strings.Contains(err.Error(), contract.AnnotationRestoreAllowGap) {
		t.Errorf("latest across a gap: %v", err)
	}
	p.allowGap = true
	if err := p.check(at(10), at(350)); err != nil || len(p.crossed) != 1 || !strings.Contains(p.crossed[0], "after mysql-bin.000001") {
		t.Errorf("allowed: %v, crossed %q", err, p.crossed)
	}
}

func TestFirstRecoverableNeedsABackupWithAPositionAfterTheStart(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(s, 0) }
	backups := []restic.Snapshot{
		{Time: at(50), Tags: []string{contract.TagBinlogCoordinates}}, // before the archive began
		{Time: at(150)}, // no position: not a base
		{Time: at(300), Tags: []string{contract.TagBinlogCoordinates}},
		{Time: at(200), Tags: []string{contract.TagBinlogCoordinates}},
	}
	if got := firstRecoverableOf(backups, at(100)); !got.Equal(at(201)) {
		t.Errorf("first recoverable %v, want a second after the backup at 200", got.Unix())
	}
	// The window starts at the first whole second a restore takes with
	// that base: a restore picks a base at least baseMargin before its
	// target, and the second before it is refused (seen in CI: the backup
	// at hh:mm:00.97 showed a window from hh:mm:00, refused at hh:mm:01).
	for _, frac := range []time.Duration{0, time.Millisecond, 976 * time.Millisecond} {
		backup := at(1000).Add(frac)
		w := firstRecoverableOf([]restic.Snapshot{{Time: backup, Tags: []string{contract.TagBinlogCoordinates}}}, at(1))
		if !w.Equal(w.Truncate(time.Second)) || backup.After(w.Add(-baseMargin)) || !backup.After(w.Add(-time.Second).Add(-baseMargin)) {
			t.Errorf("backup at %s: the window starts at %s, which a restore does not take as the first whole second", backup.Format(time.RFC3339Nano), w.Format(time.RFC3339Nano))
		}
	}
	if got := firstRecoverableOf(backups, time.Time{}); !got.IsZero() {
		t.Errorf("with no archive start: %v, want none", got)
	}
}
