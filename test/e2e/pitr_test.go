package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// binlogArgs start a server as point-in-time recovery needs it.
var binlogArgs = []string{"--log-bin=mysql-bin", "--binlog-format=ROW", "--server-id=1"}

// writer commits numbered rows, each stamped with its statement time (the
// time its binlog events carry), at a steady rate over one session.
type writer struct {
	n    atomic.Int64
	stop chan struct{}
	done chan error
}

func startWriter(t *testing.T, db *testenv.MariaDB, every time.Duration) *writer {
	t.Helper()
	cmd := exec.Command("mariadb", "--defaults-extra-file="+db.OptionFile(), "--batch")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &writer{stop: make(chan struct{}), done: make(chan error, 1)}
	out, err := db.Exec(context.Background(), "SELECT COALESCE(MAX(id), 0) FROM pitr.w")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	w.n.Store(first) // numbering goes on from the table's last row
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		var err error
	loop:
		for {
			select {
			case <-w.stop:
				break loop
			case <-tick.C:
				n := w.n.Load() + 1
				if _, err = io.WriteString(in, fmt.Sprintf("INSERT INTO pitr.w VALUES (%d, NOW());\n", n)); err != nil {
					break loop
				}
				w.n.Store(n)
			}
		}
		in.Close()
		if werr := cmd.Wait(); err == nil && werr != nil {
			err = fmt.Errorf("%w: %s", werr, stderr.String())
		}
		w.done <- err
	}()
	t.Cleanup(func() { w.end() })
	return w
}

// end stops the writer and waits for its last commit; it returns the error once.
func (w *writer) end() error {
	select {
	case <-w.stop:
		return nil
	default:
		close(w.stop)
	}
	return <-w.done
}

func pitrConfig(t *testing.T, st *client.Stash, ns, name string) *stashv1beta1.BackupConfiguration {
	t.Helper()
	bc, err := st.BackupConfigurations(ns).Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return bc
}

// TestPointInTimeRecovery: the binlog of a server under a steady write load
// is archived while a full backup is taken and the binlog rotates (a
// temporary table used across the rotation); restores to random seconds of
// the window, and to latest, each into a fresh server, hold exactly the
// rows committed up to that second, and say what they replayed.
func TestPointInTimeRecovery(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "pitrsrc", testenv.MariaDBOptions{ExtraArgs: binlogArgs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, "CREATE DATABASE pitr; CREATE TABLE pitr.w (id INT PRIMARY KEY, at DATETIME NOT NULL); CREATE TABLE pitr.fromtmp (total INT);"+appUserSQL); err != nil {
		t.Fatal(err)
	}
	ns := "pitr-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "pitr", "--target", "appbinding/src", "--repository", "repo",
		"--pitr", "--pitr-interval", "2s", "--pushgateway", s.env.Pushgateway.URL), "backupconfig --pitr")
	agent := startAgent(t, ns, "src")
	eventually(t, time.Minute, "the archive to start", func() bool {
		c := apimeta.FindStatusCondition(pitrConfig(t, st, ns, "pitr").Status.Conditions, stashv1beta1.ConditionBinlogArchiving)
		return c != nil && c.Status == "True"
	})

	w := startWriter(t, src, 50*time.Millisecond)
	rowsAtLeast := func(n int64) {
		t.Helper()
		eventually(t, time.Minute, fmt.Sprintf("the writer to commit %d rows", n), func() bool { return w.n.Load() >= n })
	}
	rowsAtLeast(40) // rows before the base backup
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "pitr", "--wait", "--timeout", "3m"), "full backup")
	backupDone := time.Now()
	// A temporary table created before a rotation and used after it.
	if _, err := src.Exec(ctx, "USE pitr; CREATE TEMPORARY TABLE tmp (x INT); INSERT INTO tmp VALUES (20), (22); FLUSH BINARY LOGS; INSERT INTO pitr.fromtmp SELECT SUM(x) FROM tmp;"); err != nil {
		t.Fatal(err)
	}
	// The agent dies mid-archive and comes back: the archive resumes.
	agent.Kill()
	rowsAtLeast(w.n.Load() + 20)
	startAgent(t, ns, "src")
	if _, err := src.Exec(ctx, "FLUSH BINARY LOGS"); err != nil {
		t.Fatal(err)
	}
	rowsAtLeast(w.n.Load() + 60)
	if err := w.end(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	out, err := src.Exec(ctx, "SELECT MAX(at), COUNT(*) FROM pitr.w")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	lastAt, err := time.ParseInLocation(time.DateTime, f[0]+" "+f[1], time.UTC)
	if err != nil {
		t.Fatalf("MAX(at) %q: %v", out, err)
	}
	if !poll(time.Minute, func() bool {
		ps := pitrConfig(t, st, ns, "pitr").Status.PointInTimeRecovery
		return ps != nil && ps.LastRecoverableTime != nil && ps.FirstRecoverableTime != nil && !ps.LastRecoverableTime.Time.Before(lastAt.Add(time.Second))
	}) {
		bc := pitrConfig(t, st, ns, "pitr")
		t.Fatalf("the archive did not reach the last write (%s): %+v %+v", lastAt, bc.Status.PointInTimeRecovery, bc.Status.Conditions)
	}
	queriesHaveData(t, "stash_pitr_")
	ps := pitrConfig(t, st, ns, "pitr").Status.PointInTimeRecovery
	r := kubectl(t, "", "stash", "-n", ns, "status", "pitr", "-o", "json")
	mustOK(t, r, "status")
	if !strings.Contains(r.stdout, `"recoverableUntil"`) || !strings.Contains(r.stdout, `"recoverableFrom"`) || !strings.Contains(r.stdout, `"pitr": true`) {
		t.Errorf("kubectl stash status does not show the window:\n%s", r.stdout)
	}
	if len(ps.Gaps) != 0 {
		t.Errorf("gaps after an agent restart and rotations: %+v", ps.Gaps)
	}
	// The archive commits far more often than the backups run: listings
	// and "latest" mean the dumps unless asked.
	r = kubectl(t, "", "stash", "-n", ns, "snapshots", "repo")
	mustOK(t, r, "snapshots")
	if strings.Contains(r.stdout, contract.BinlogHost) || !strings.Contains(r.stderr, "--binlog lists them") {
		t.Errorf("snapshots lists the binlog archive unasked:\n%s\n%s", r.stdout, r.stderr)
	}
	r = kubectl(t, "", "stash", "-n", ns, "snapshots", "repo", "--binlog")
	mustOK(t, r, "snapshots --binlog")
	if !strings.Contains(r.stdout, contract.BinlogHost) {
		t.Errorf("snapshots --binlog does not list the binlog archive:\n%s", r.stdout)
	}
	// A verification of the base also replays the archive to a random
	// second of the window, counting what it applied against the archive.
	r = kubectl(t, "", "stash", "-n", ns, "verify", "pitr", "--wait", "--timeout", "3m")
	mustOK(t, r, "verify")
	if vl := verifications(t, st, ns, "pitr"); len(vl) != 1 || vl[0].Status.PointInTime == nil || vl[0].Status.PointInTime.Transactions == 0 ||
		apimeta.FindStatusCondition(vl[0].Status.Conditions, stashv1beta1.ConditionPointInTimeRestored) == nil {
		t.Errorf("a verification with the binlog archived replayed nothing: %+v", vl)
	} else {
		t.Logf("verify: %s", vl[0].Status.Message)
	}
	r = kubectl(t, "", "stash", "-n", ns, "download", "repo", "--snapshot", "latest", "--to-file", "-")
	mustOK(t, r, "download latest")
	if !strings.Contains(r.stdout[:min(len(r.stdout), 4096)], "CHANGE MASTER TO") {
		t.Errorf("download --snapshot latest is not the newest dump: %.200q", r.stdout)
	}
	t.Logf("window %s .. %s, archived %s (%s), %d rows written", ps.FirstRecoverableTime.UTC().Format(time.RFC3339), ps.LastRecoverableTime.UTC().Format(time.RFC3339),
		ps.LastArchivedPosition, ps.LastArchivedGTID, w.n.Load())

	// Five random seconds after the backup, and latest.
	lo, hi := backupDone.Unix()+1, lastAt.Unix()
	if hi <= lo {
		t.Fatalf("the window after the backup is empty: %d..%d", lo, hi)
	}
	var targets []string
	for range 5 {
		targets = append(targets, time.Unix(lo+rand.Int64N(hi-lo+1), 0).UTC().Format(time.RFC3339))
	}
	targets = append(targets, "latest")
	rows := func(db *testenv.MariaDB, where string) string {
		t.Helper()
		out, err := db.Exec(ctx, "SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(id), 0) FROM pitr.w "+where)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	for i, at := range targets {
		name := "pitrdst" + strconv.Itoa(i)
		dst := pitrTarget(t, ns, name, src)
		var app *appWriter
		if at == "latest" {
			// An application keeps writing to the target: the restore
			// holds the server read-only until the replay ends.
			app = startAppWriter(t, dst)
		}
		rs := restoreAt(t, st, ns, name, at)
		if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
			t.Fatalf("restore --at %s: %s: %s", at, rs.Status.Phase, rs.Status.Message)
		}
		if c := apimeta.FindStatusCondition(rs.Status.Conditions, stashv1beta1.ConditionTargetReadOnly); c == nil || c.Status != "True" || c.Reason != "Released" {
			t.Errorf("restore --at %s: condition %s: %+v", at, stashv1beta1.ConditionTargetReadOnly, c)
		}
		if app != nil {
			refused, err := app.end()
			if err != nil {
				t.Fatal(err)
			}
			if refused == 0 {
				t.Error("the application's writes were never refused during the restore")
			}
			if out, err := dst.Exec(ctx, "SELECT @@global.read_only"); err != nil || strings.TrimSpace(out) != "0" {
				t.Errorf("read_only after the restore: %q, %v; want 0", out, err)
			}
			if err := app.insertOnce(); err != nil {
				t.Errorf("the application cannot write after the restore: %v", err)
			}
			t.Logf("the application's writes refused during the restore: %d", refused)
		}
		where := ""
		if at != "latest" {
			where = fmt.Sprintf("WHERE at <= '%s'", strings.TrimSuffix(strings.Replace(at, "T", " ", 1), "Z"))
		}
		want, got := rows(src, where), rows(dst, "")
		if got != want {
			t.Errorf("restore --at %s: rows (count, max id, sum) %s, want %s; status %+v", at, got, want, rs.Status.PointInTime)
		}
		p := rs.Status.PointInTime
		if p == nil || p.Transactions == 0 || p.Target != at || p.StartPosition == "" || p.LastGTID == "" {
			t.Errorf("restore --at %s: the status does not say what was replayed: %+v", at, p)
		}
		if c := apimeta.FindStatusCondition(rs.Status.Conditions, stashv1beta1.ConditionPointInTimeRestored); c == nil || c.Status != "True" {
			t.Errorf("restore --at %s: condition %s: %+v", at, stashv1beta1.ConditionPointInTimeRestored, c)
		}
		if at == "latest" {
			if got, err := dst.Exec(ctx, "SELECT total FROM pitr.fromtmp"); err != nil || strings.TrimSpace(got) != "42" {
				t.Errorf("the row made from a temporary table across a rotation: %q, %v", got, err)
			}
		}
		t.Logf("restore --at %s: %s", at, rs.Status.Message)
	}

	// To a transaction: the writer's last rows are its last transactions,
	// one each, so row N-k is sequence last-k.
	var domain, server, last int64
	if _, err := fmt.Sscanf(ps.LastArchivedGTID, "%d-%d-%d", &domain, &server, &last); err != nil {
		t.Fatalf("last archived GTID %q: %v", ps.LastArchivedGTID, err)
	}
	_, n := lastRow(t, src)
	for i, exclusive := range []bool{false, true} {
		name := "pitrgtid" + strconv.Itoa(i)
		dst := pitrTarget(t, ns, name, src)
		gtid := fmt.Sprintf("%d-%d-%d", domain, server, last-10)
		args := []string{"stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/" + name, "--to-gtid", gtid}
		want := n - 10
		if exclusive {
			args = append(args, "--gtid-exclusive")
			want--
		}
		r := kubectl(t, "", args...)
		mustOK(t, r, "restore --to-gtid")
		startAgent(t, ns, name)
		rs := waitRestore(t, st, ns, createdName(lastLine(r.stdout)))
		if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
			t.Fatalf("restore --to-gtid %s (exclusive %v): %s: %s", gtid, exclusive, rs.Status.Phase, rs.Status.Message)
		}
		if got := rows(dst, ""); got != rows(src, fmt.Sprintf("WHERE id <= %d", want)) {
			t.Errorf("restore --to-gtid %s (exclusive %v): rows %s, want the first %d", gtid, exclusive, got, want)
		}
		t.Logf("restore --to-gtid %s (exclusive %v): %s", gtid, exclusive, rs.Status.Message)
	}
}

// appUserSQL makes the application's user, which may write only its own
// database, on the source (so the restored accounts keep it) and targets.
const appUserSQL = "CREATE USER app@'%' IDENTIFIED BY 'app-pw'; GRANT SELECT, INSERT ON app.* TO app@'%';"

// appWriter is an application writing to a target as its own user, going on
// past refused statements and counting them.
type appWriter struct {
	db     *testenv.MariaDB
	opt    string
	stop   chan struct{}
	done   chan error
	stderr strings.Builder
}

func startAppWriter(t *testing.T, db *testenv.MariaDB) *appWriter {
	t.Helper()
	ctx := context.Background()
	if _, err := db.Exec(ctx, "CREATE DATABASE app; CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY);"+appUserSQL); err != nil {
		t.Fatal(err)
	}
	a := &appWriter{db: db, opt: filepath.Join(t.TempDir(), "app.cnf"), stop: make(chan struct{}), done: make(chan error, 1)}
	if err := os.WriteFile(a.opt, []byte(fmt.Sprintf("[client]\nuser=app\npassword=app-pw\nhost=%s\nport=%d\n", db.Host, db.Port)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mariadb", "--defaults-extra-file="+a.opt, "--batch", "--force")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var err error
	loop:
		for {
			select {
			case <-a.stop:
				break loop
			case <-tick.C:
				if _, err = io.WriteString(in, "INSERT INTO app.t VALUES ();\n"); err != nil {
					break loop
				}
			}
		}
		in.Close()
		if werr := cmd.Wait(); err == nil && werr != nil && !strings.Contains(a.stderr.String(), "1290") {
			err = fmt.Errorf("%w: %s", werr, a.stderr.String())
		}
		a.done <- err
	}()
	t.Cleanup(func() { a.end() })
	return a
}

// end stops the writer and returns how many writes the server refused as
// read-only; any other error fails.
func (a *appWriter) end() (int, error) {
	select {
	case <-a.stop:
		return 0, nil
	default:
		close(a.stop)
	}
	if err := <-a.done; err != nil {
		return 0, err
	}
	refused := 0
	for _, l := range strings.Split(a.stderr.String(), "\n") {
		switch {
		case strings.HasPrefix(l, "ERROR 1290"):
			refused++
		case strings.HasPrefix(l, "ERROR"):
			return refused, fmt.Errorf("the application's write failed otherwise: %s", l)
		}
	}
	return refused, nil
}

// insertOnce writes one row as the application.
func (a *appWriter) insertOnce() error {
	out, err := exec.Command("mariadb", "--defaults-extra-file="+a.opt, "-e", "INSERT INTO app.t VALUES ()").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// pitrTarget is a fresh server for a restore of src's full dump: it takes
// src's password (the dump carries src's users), and an AppBinding.
func pitrTarget(t *testing.T, ns, name string, src *testenv.MariaDB) *testenv.MariaDB {
	t.Helper()
	ctx := context.Background()
	dst, err := s.env.AddMariaDB(ctx, name, testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Exec(ctx, fmt.Sprintf("ALTER USER '%s'@'%%' IDENTIFIED BY '%s';", dst.User, src.Password)); err != nil {
		t.Fatal(err)
	}
	dst.Password = src.Password
	if err := dst.RewriteOptionFile(); err != nil {
		t.Fatal(err)
	}
	addAppBinding(t, ns, name, dst)
	return dst
}

// restoreAt restores repo into appbinding/name at a time (or latest), with
// the target's agent, and returns the ended RestoreSession.
func restoreAt(t *testing.T, st *client.Stash, ns, name, at string, extra ...string) *stashv1beta1.RestoreSession {
	t.Helper()
	r := kubectl(t, "", append([]string{"stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/" + name, "--at", at}, extra...)...)
	mustOK(t, r, "restore --at "+at)
	startAgent(t, ns, name)
	return waitRestore(t, st, ns, createdName(lastLine(r.stdout)))
}

// lastRow is the time of the source's newest row and the rows there are.
func lastRow(t *testing.T, db *testenv.MariaDB) (time.Time, int) {
	t.Helper()
	out, err := db.Exec(context.Background(), "SELECT COALESCE(MAX(at), '1970-01-01 00:00:00'), COUNT(*) FROM pitr.w")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	at, err := time.ParseInLocation(time.DateTime, f[0]+" "+f[1], time.UTC)
	if err != nil {
		t.Fatalf("MAX(at) %q: %v", out, err)
	}
	n, _ := strconv.Atoi(f[2])
	return at, n
}

// TestPITRGapsAndRequirements: a server without a binlog gets the fix in
// the BinlogArchiving condition while its full backups go on; binlogs
// purged while the agent was away are a gap, shown in the status, an Event
// and a metric; a restore into the gap is refused before the target is
// touched, one before it works, and the window opens again at the next
// full backup.
func TestPITRGapsAndRequirements(t *testing.T) {
	ctx := context.Background()
	ns := "pitr-gap-e2e"
	st := localRepoNamespace(t, ns)

	// No binlog: the condition names the server option; backups go on.
	plain, err := s.env.AddMariaDB(ctx, "pitrplain", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addAppBinding(t, ns, "plain", plain)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "plain", "--target", "appbinding/plain", "--repository", "repo", "--pitr"), "bc")
	startAgent(t, ns, "plain")
	eventually(t, time.Minute, "the requirement to be named", func() bool {
		c := apimeta.FindStatusCondition(pitrConfig(t, st, ns, "plain").Status.Conditions, stashv1beta1.ConditionBinlogArchiving)
		return c != nil && c.Status == "False" && strings.Contains(c.Message, "--log-bin") && c.Reason == "ServerNotReady"
	})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "plain", "--wait", "--timeout", "2m"), "a full backup of a server without a binlog")

	// A gap: the agent is away while the server purges its binlog.
	src, err := s.env.AddMariaDB(ctx, "pitrgap", testenv.MariaDBOptions{ExtraArgs: binlogArgs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, "CREATE DATABASE pitr; CREATE TABLE pitr.w (id INT PRIMARY KEY, at DATETIME NOT NULL);"); err != nil {
		t.Fatal(err)
	}
	addAppBinding(t, ns, "src", src)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "gap", "--target", "appbinding/src", "--repository", "repo", "--pitr", "--pitr-interval", "1s"), "bc")
	agent := startAgent(t, ns, "src")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "gap", "--wait", "--timeout", "2m"), "full backup")
	w := startWriter(t, src, 50*time.Millisecond)
	eventually(t, time.Minute, "rows after the backup", func() bool { return w.n.Load() >= 40 })
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	beforeGap, _ := lastRow(t, src)
	eventually(t, time.Minute, "the archive to reach the rows", func() bool {
		ps := pitrConfig(t, st, ns, "gap").Status.PointInTimeRecovery
		return ps != nil && ps.LastRecoverableTime != nil && ps.LastRecoverableTime.After(beforeGap)
	})
	agent.Stop(20 * time.Second)
	w = startWriter(t, src, 50*time.Millisecond)
	gapFirst := w.n.Load() + 1
	away := w.n.Load() + 40
	eventually(t, time.Minute, "rows while the agent is away", func() bool { return w.n.Load() >= away })
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	gapLast := w.n.Load()
	inGap, _ := lastRow(t, src)
	if _, err := src.Exec(ctx, "FLUSH BINARY LOGS; FLUSH BINARY LOGS;"); err != nil {
		t.Fatal(err)
	}
	// MariaDB keeps a file until InnoDB's checkpoint has passed it.
	eventually(t, time.Minute, "the server to purge its older binlogs", func() bool {
		out, err := src.Exec(ctx, "PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY; SHOW BINARY LOGS;")
		return err == nil && strings.Count(strings.TrimSpace(out), "\n") == 0
	})
	agent = startAgent(t, ns, "src")
	var ps *stashv1beta1.PITRStatus
	eventually(t, time.Minute, "the gap in the status", func() bool {
		ps = pitrConfig(t, st, ns, "gap").Status.PointInTimeRecovery
		return ps != nil && len(ps.Gaps) == 1
	})
	if c := apimeta.FindStatusCondition(pitrConfig(t, st, ns, "gap").Status.Conditions, stashv1beta1.ConditionBinlogContinuous); c == nil || c.Status != "False" || !strings.Contains(c.Message, "purged") {
		t.Errorf("condition %s after the gap: %+v", stashv1beta1.ConditionBinlogContinuous, c)
	}
	if g := ps.Gaps[0]; !strings.Contains(g.Reason, "purged") || g.To == nil || !g.From.Time.Before(g.To.Time) {
		t.Errorf("gap %+v: want one saying the binlog was purged, with its times", g)
	}
	evs, err := kube(t).CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=BinlogGap"})
	if err != nil || len(evs.Items) == 0 {
		t.Errorf("no BinlogGap Event: %v", err)
	}
	eventually(t, 30*time.Second, "stash_pitr_gaps_total 1 in the agent's metrics", func() bool {
		return strings.HasSuffix(agentMetric(agent.Listen, "stash_pitr_gaps_total", "gap"), " 1")
	})

	// Into the gap: refused, the target untouched. Before it: restored.
	dst := pitrTarget(t, ns, "ingap", src)
	rs := restoreAt(t, st, ns, "ingap", inGap.Format(time.RFC3339))
	if rs.Status.Phase == stashv1beta1.RestoreSucceeded || !strings.Contains(rs.Status.Message, "gap") || !strings.Contains(rs.Status.Message, "not changed") {
		t.Errorf("a restore into the gap: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if out, _ := dst.Exec(ctx, "SHOW DATABASES LIKE 'pitr'"); strings.TrimSpace(out) != "" {
		t.Error("a refused restore changed the target")
	}
	pitrTarget(t, ns, "beforegap", src)
	rs = restoreAt(t, st, ns, "beforegap", beforeGap.Format(time.RFC3339))
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Errorf("a restore before the gap: %s: %s", rs.Status.Phase, rs.Status.Message)
	}

	// Across the gap, when the user allows it: every archived row is
	// there, the gap's rows are not, and the status names the gap.
	w = startWriter(t, src, 50*time.Millisecond)
	eventually(t, time.Minute, "rows after the gap", func() bool { return w.n.Load() >= gapLast+20 })
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	// No backup after the gap yet, so no window: the archive's last GTID
	// says it has every row.
	pos, err := src.Exec(ctx, "SELECT @@gtid_binlog_pos")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the archive to reach the rows after the gap", func() bool {
		ps := pitrConfig(t, st, ns, "gap").Status.PointInTimeRecovery
		return ps != nil && ps.LastArchivedGTID == strings.TrimSpace(pos)
	})
	across := pitrTarget(t, ns, "acrossgap", src)
	rs = restoreAt(t, st, ns, "acrossgap", "latest", "--allow-gap")
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded || rs.Status.PointInTime == nil || len(rs.Status.PointInTime.GapsCrossed) == 0 || !strings.Contains(rs.Status.Message, "missing") {
		t.Fatalf("a restore allowed across the gap: %s: %s %+v", rs.Status.Phase, rs.Status.Message, rs.Status.PointInTime)
	}
	want, err := src.Exec(ctx, fmt.Sprintf("SELECT COUNT(*), MAX(id) FROM pitr.w WHERE id NOT BETWEEN %d AND %d", gapFirst, gapLast))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := across.Exec(ctx, "SELECT COUNT(*), MAX(id) FROM pitr.w"); err != nil || got != want {
		t.Errorf("across the gap: rows (count, max) %q, want %q (all but the gap's %d..%d): %v", got, want, gapFirst, gapLast, err)
	}
	t.Logf("across the gap: %s; crossed %q", rs.Status.Message, rs.Status.PointInTime.GapsCrossed)

	// The next full backup opens the window again.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "gap", "--wait", "--timeout", "2m"), "full backup after the gap")
	eventually(t, time.Minute, "the window to reopen after the gap", func() bool {
		ps = pitrConfig(t, st, ns, "gap").Status.PointInTimeRecovery
		c := apimeta.FindStatusCondition(pitrConfig(t, st, ns, "gap").Status.Conditions, stashv1beta1.ConditionBinlogContinuous)
		return ps != nil && ps.FirstRecoverableTime != nil && len(ps.Gaps) == 1 && ps.Gaps[0].To != nil && !ps.FirstRecoverableTime.Before(ps.Gaps[0].To) &&
			c != nil && c.Status == "True"
	})
}

// agentMetric is the line of one metric of one invoker that the agent at
// listen serves ("" when it has none, or does not answer).
func agentMetric(listen, name, invoker string) string {
	resp, err := http.Get("http://" + listen + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+"{") && strings.Contains(l, `invoker_name="`+invoker+`"`) {
			return l
		}
	}
	return ""
}

// TestPITRRecoveryPoint: under a steady write load the database restarts
// (the archive resumes with no gap), then is killed (SIGKILL); a restore of
// latest into a new server loses at most what the last interval and its
// upload hold, and the rows it has are exactly the first ones committed.
// The config dumps one database: the replay applies that database's events
// only.
func TestPITRRecoveryPoint(t *testing.T) {
	ctx := context.Background()
	const interval, rate = 2 * time.Second, 20 // rows per second
	src, err := s.env.AddMariaDB(ctx, "pitrrpo", testenv.MariaDBOptions{ExtraArgs: binlogArgs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, "CREATE DATABASE pitr; CREATE TABLE pitr.w (id INT PRIMARY KEY, at DATETIME NOT NULL);"); err != nil {
		t.Fatal(err)
	}
	ns := "pitr-rpo-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	// One database is backed up; another takes writes too, which the
	// replay must leave out (the target has no such database).
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "rpo", "--target", "appbinding/src", "--repository", "repo",
		"--pitr", "--pitr-interval", interval.String(), "--param", "args=--databases pitr"), "bc")
	agent := startAgent(t, ns, "src")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "rpo", "--wait", "--timeout", "2m"), "full backup")
	if _, err := src.Exec(ctx, "CREATE DATABASE noise; CREATE TABLE noise.n (a INT); INSERT INTO noise.n VALUES (1);"); err != nil {
		t.Fatal(err)
	}
	w := startWriter(t, src, time.Second/rate)
	eventually(t, time.Minute, "rows before the restart", func() bool { return w.n.Load() >= 40 })
	_ = w.end() // the restart ends its session
	if err := src.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	w = startWriter(t, src, time.Second/rate)
	eventually(t, time.Minute, "the archive to resume after the restart", func() bool {
		ps := pitrConfig(t, st, ns, "rpo").Status.PointInTimeRecovery
		return ps != nil && ps.LastRecoverableTime != nil && ps.LastRecoverableTime.After(restarted.Add(time.Second))
	})
	more := w.n.Load() + 80
	eventually(t, time.Minute, "rows after the restart", func() bool { return w.n.Load() >= more })
	src.Process.Kill()
	_ = w.end()
	agent.Stop(20 * time.Second) // what it received, it commits
	if ps := pitrConfig(t, st, ns, "rpo").Status.PointInTimeRecovery; ps == nil || len(ps.Gaps) != 0 {
		t.Errorf("the archive across a database restart: %+v", ps)
	}

	dst := pitrTarget(t, ns, "dst", src)
	rs := restoreAt(t, st, ns, "dst", "latest")
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("restore --at latest after the source died: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	// Crash recovery tells what the dead server had committed.
	if err := src.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	count := func(db *testenv.MariaDB) (n, max, sum int64) {
		t.Helper()
		out, err := db.Exec(ctx, "SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(id), 0) FROM pitr.w")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscan(out, &n, &max, &sum); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		return n, max, sum
	}
	committed, _, _ := count(src)
	if out, _ := dst.Exec(ctx, "SHOW DATABASES LIKE 'noise'"); strings.TrimSpace(out) != "" {
		t.Error("the replay applied another database's events")
	}
	got, max, sum := count(dst)
	if max != got || sum != got*(got+1)/2 {
		t.Errorf("the restored rows are not the first %d: max id %d, sum %d", got, max, sum)
	}
	lost := committed - got
	bound := int64(rate * (interval + 3*time.Second) / time.Second)
	t.Logf("recovery point: %d of %d committed transactions lost (bound %d: the interval %s and an upload, at %d rows/s)", lost, committed, bound, interval, rate)
	if lost < 0 || lost > bound {
		t.Errorf("lost %d transactions, want 0..%d", lost, bound)
	}
}
