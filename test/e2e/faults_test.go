package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// stallDump holds a write lock on shop.big, so a dump of shop stops there
// mid-stream until release is called. release is safe to call twice.
func stallDump(t *testing.T, db *testenv.MariaDB) (release func()) {
	t.Helper()
	return lockTable(t, db, "shop.big")
}

// lockTable holds a write lock on table (db.name) until release is called:
// a dump stops there. release is safe to call twice.
func lockTable(t *testing.T, db *testenv.MariaDB, table string) (release func()) {
	t.Helper()
	return holdSQL(t, db, table, "LOCK TABLES "+table+" WRITE;")
}

// readTable holds an open transaction that read table until release is
// called: a restore's DROP TABLE waits there, and nothing else does (a
// LOCK TABLES would also stop the dump's CREATE DATABASE).
func readTable(t *testing.T, db *testenv.MariaDB, table string) (release func()) {
	t.Helper()
	return holdSQL(t, db, table, "BEGIN; SELECT COUNT(*) FROM "+table+";")
}

func holdSQL(t *testing.T, db *testenv.MariaDB, table, hold string) (release func()) {
	t.Helper()
	lock := exec.Command("mariadb", "--defaults-extra-file="+db.OptionFile())
	stdin, err := lock.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		stdin.Close()
		_ = lock.Process.Kill()
		_ = lock.Wait()
	}
	t.Cleanup(release)
	fmt.Fprintf(stdin, "%s SELECT SLEEP(300) AS stash_e2e_lock;\n", hold)
	// The lock is held once its session sleeps; wait for that, not for a guess.
	eventually(t, 30*time.Second, "the lock on "+table+" to be held", func() bool {
		out, err := db.Exec(context.Background(), "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(300) AS stash_e2e_lock%'")
		return err == nil && strings.TrimSpace(out) == "1"
	})
	return release
}

// waitDumping waits until the agent's restic and its dump run.
func waitDumping(t *testing.T, agent *testenv.AgentProcess) {
	t.Helper()
	eventually(t, 60*time.Second, "the dump to be running", func() bool {
		return findProcess("restic", agent.Scratch) > 0 && (findProcess("mysqldump", agent.Scratch) > 0 || findProcess("mariadb-dump", agent.Scratch) > 0)
	})
}

func waitPhase(t *testing.T, f *backupFixture, name string, timeout time.Duration, want ...stashv1beta1.BackupSessionPhase) *stashv1beta1.BackupSession {
	t.Helper()
	var bs *stashv1beta1.BackupSession
	eventually(t, timeout, fmt.Sprintf("session %s to reach %v", name, want), func() bool {
		got, err := f.st.BackupSessions(f.ns).Get(context.Background(), name)
		if err != nil {
			return false
		}
		bs = got
		for _, w := range want {
			if got.Status.Phase == w {
				return true
			}
		}
		return false
	})
	return bs
}

func resticCheck(t *testing.T, repo, password string) {
	t.Helper()
	// The agent may still be reading the repository's statistics.
	check := exec.Command(filepath.Join(testenv.RepoRoot(), "bin", "restic"), "-r", repo, "--no-cache", "--retry-lock=1m", "check")
	check.Env = append(os.Environ(), "RESTIC_PASSWORD="+password)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("restic check: %v\n%s", err, out)
	}
}

// TestAPIServerRestartDuringBackup: kube-apiserver goes down while a dump
// runs and the backup finishes during the outage. The agent keeps the
// result and writes the status once the API server is back.
func TestAPIServerRestartDuringBackup(t *testing.T) {
	f := newBackupFixture(t, "apirestart-e2e", s.env.MariaDBs[0])
	ns := f.ns
	dir := t.TempDir()
	f.localRepo(t, dir)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "outage", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop"), "bc")
	agent := startAgent(t, ns, "db")
	release := stallDump(t, f.db)
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "outage")
	mustOK(t, r, "trigger")
	name := createdName(r.stdout)
	waitDumping(t, agent)

	restarted := make(chan error, 1)
	down := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		restarted <- s.env.Control.RestartAPIServer(ctx, 4*time.Second)
	}()
	// Let the dump finish while the API server is down.
	time.Sleep(time.Second)
	release()
	eventually(t, 30*time.Second, "the backup to finish during the outage", func() bool {
		return findProcess("restic", agent.Scratch) == 0
	})
	if err := <-restarted; err != nil {
		t.Fatalf("restart kube-apiserver: %v", err)
	}
	t.Logf("kube-apiserver was unavailable for %s", time.Since(down).Round(100*time.Millisecond))
	bs := waitPhase(t, f, name, 2*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded {
		t.Fatalf("session %s is %s after the outage: %s", name, bs.Status.Phase, bs.Status.Message)
	}
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 1 {
		t.Fatalf("%d snapshots; want 1", n)
	}
	if agent.Exited() {
		t.Fatal("the agent exited during the outage")
	}
	// The agent still works after the outage.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "outage", "--wait", "--timeout", "2m"), "trigger after the outage")
}

// TestBackendStoppedMidUpload: the rest-server stops while restic uploads.
// The session fails at its timeOut naming the backend, no snapshot is
// left, the repository checks clean, and the next backup succeeds.
func TestBackendStoppedMidUpload(t *testing.T) {
	f := newBackupFixture(t, "backend-e2e", s.env.MariaDBs[0])
	ns := f.ns
	ctx := context.Background()
	rest, err := s.env.StartRestServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rest.Process.Stop(5 * time.Second) })
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "rest", "--url", rest.URL+"/mid", "--secret", "repo-creds"), "repo")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "midway", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop", "--session-timeout", "25s"), "bc")
	agent := startAgent(t, ns, "db")
	// A first backup initialises the repository.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "midway", "--wait", "--timeout", "2m"), "first backup")

	release := stallDump(t, f.db)
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "midway")
	mustOK(t, r, "trigger")
	name := createdName(r.stdout)
	waitDumping(t, agent)
	rest.Process.Stop(5 * time.Second)
	release()
	bs := waitPhase(t, f, name, 90*time.Second, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	if bs.Status.Phase != stashv1beta1.BackupSessionFailed {
		t.Fatalf("session %s is %s with the backend down", name, bs.Status.Phase)
	}
	t.Logf("message: %s", bs.Status.Message)
	for _, want := range []string{"timeOut", "repository repo", "backend is unreachable", "connection refused"} {
		if !strings.Contains(bs.Status.Message, want) {
			t.Errorf("message lacks %q: %s", want, bs.Status.Message)
		}
	}
	if !meta(bs.Status.Conditions, stashv1beta1.ConditionDeadlineExceeded) {
		t.Errorf("no %s condition: %+v", stashv1beta1.ConditionDeadlineExceeded, bs.Status.Conditions)
	}
	if err := rest.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	url := "rest:" + rest.URL + "/mid"
	if n := resticSnapshots(t, url, f.repoPass, nil); n != 1 {
		t.Errorf("%d snapshots after one good and one failed backup; want 1", n)
	}
	// restic could not remove its lock with the backend down; the next
	// backup removes it (it is provably stale) and succeeds.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "midway", "--wait", "--timeout", "2m"), "backup once the backend is back")
	resticCheck(t, url, f.repoPass)
	if n := resticSnapshots(t, url, f.repoPass, nil); n != 2 {
		t.Errorf("%d snapshots; want 2", n)
	}
}

func meta(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ && c.Status == metav1.ConditionTrue {
			return true
		}
	}
	return false
}

// TestDatabaseRestartMidDump: MariaDB restarts while mysqldump streams.
// The session is Failed, no snapshot is left, and the next backup works.
func TestDatabaseRestartMidDump(t *testing.T) {
	f := newBackupFixture(t, "dbrestart-e2e", s.env.MariaDBs[1])
	ns := f.ns
	dir := t.TempDir()
	f.localRepo(t, dir)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "dbr", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop"), "bc")
	agent := startAgent(t, ns, "db")
	stallDump(t, f.db)
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "dbr")
	mustOK(t, r, "trigger")
	name := createdName(r.stdout)
	waitDumping(t, agent)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := f.db.Restart(ctx); err != nil {
		t.Fatalf("restart MariaDB: %v", err)
	}
	bs := waitPhase(t, f, name, 90*time.Second, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	if bs.Status.Phase != stashv1beta1.BackupSessionFailed {
		t.Fatalf("session %s is %s although the database restarted mid-dump", name, bs.Status.Phase)
	}
	// The cause comes from mysqldump's own error log, not from what restic
	// managed to relay of its stderr.
	if !strings.Contains(bs.Status.Message, "mysqldump failed (mysqldump: ") || !strings.Contains(bs.Status.Message, "so no snapshot was saved") {
		t.Errorf("message does not say that and why mysqldump failed: %s", bs.Status.Message)
	}
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 0 {
		t.Fatalf("%d snapshots after a dump cut short; want 0", n)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "dbr", "--wait", "--timeout", "2m"), "backup after the restart")
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 1 {
		t.Fatalf("%d snapshots; want 1", n)
	}
}

// TestMissedSlotsCatchUp: slots pass while no agent runs. On start the
// agent runs one backup for the newest missed slot (never a burst), and
// none for a config that says --catch-up none.
func TestMissedSlotsCatchUp(t *testing.T) {
	f := newBackupFixture(t, "catchup-e2e", s.env.MariaDBs[1])
	ns := f.ns
	ctx := context.Background()
	f.localRepo(t, t.TempDir())
	for _, c := range []struct{ name, mode string }{{"eager", "one"}, {"lazy", "none"}} {
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", c.name, "--target", "appbinding/db", "--repository", "repo",
			"--schedule", "@every 5s", "--param", "args=--databases inventory", "--backup-history-limit", "50", "--catch-up", c.mode), "bc "+c.name)
	}
	// No agent runs for three slots or more.
	time.Sleep(16 * time.Second)
	// Every slot before start was missed. The agent's first term may begin
	// just after a slot boundary; that slot is missed too and is the one
	// caught up, so catch-up sessions are told by their annotation, and a
	// burst by slots before start.
	// Start just after a slot boundary, where a slot once went neither
	// caught up nor scheduled.
	now := time.Now()
	time.Sleep(now.Truncate(5 * time.Second).Add(5*time.Second + 200*time.Millisecond).Sub(now))
	start := time.Now()
	startAgent(t, ns, "db")
	type count struct {
		catchUp, beforeStart int
		names                []string
	}
	sessions := func(config string) (c count) {
		l, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, bs := range l.Items {
			if bs.Spec.Invoker.Name != config {
				continue
			}
			slot, err := time.Parse(time.RFC3339, bs.Annotations[contract.AnnotationSlot])
			if err != nil {
				t.Fatalf("session %s has no slot annotation: %v", bs.Name, bs.Annotations)
			}
			isCatchUp := bs.Annotations[stashv1beta1.AnnotationCatchUp] == "true"
			if isCatchUp {
				c.catchUp++
			}
			if slot.Before(start) {
				c.beforeStart++
			}
			if isCatchUp || slot.Before(start) {
				c.names = append(c.names, bs.Name)
			}
		}
		return c
	}
	eventually(t, 30*time.Second, "a catch-up session", func() bool { return sessions("eager").catchUp > 0 })
	// Let two scheduled slots pass: the missed ones stay at one.
	time.Sleep(11 * time.Second)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "pause", "backupconfig", "eager"), "pause")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "pause", "backupconfig", "lazy"), "pause")
	eager := sessions("eager")
	if eager.catchUp != 1 || eager.beforeStart > 1 {
		t.Errorf("eager: %d catch-up sessions and %d for slots before the agent started, want 1 and at most 1: %v", eager.catchUp, eager.beforeStart, eager.names)
	}
	if lazy := sessions("lazy"); lazy.catchUp != 0 || lazy.beforeStart != 0 {
		t.Errorf("lazy (--catch-up none): %d catch-up sessions and %d for slots before the agent started, want none: %v", lazy.catchUp, lazy.beforeStart, lazy.names)
	}
	if len(eager.names) == 1 {
		waitPhase(t, f, eager.names[0], 2*time.Minute, stashv1beta1.BackupSessionSucceeded)
	}
}

// TestSIGTERMDuringBackup: a pod being deleted gets SIGTERM. A backup that
// ends within the grace period succeeds; one that does not is stopped,
// marked Failed with the cause, its lock released, and retried by the next
// agent.
func TestSIGTERMDuringBackup(t *testing.T) {
	f := newBackupFixture(t, "sigterm-e2e", s.env.MariaDBs[0])
	ns := f.ns
	dir := t.TempDir()
	f.localRepo(t, dir)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "term", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop", "--max-retry", "1", "--retry-delay", "1s", "--backup-history-limit", "10"), "bc")

	sigterm := func(agent *testenv.AgentProcess) time.Time {
		if err := syscall.Kill(agent.Pid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	waitExit := func(agent *testenv.AgentProcess, within time.Duration) time.Duration {
		start := time.Now()
		eventually(t, within, "the agent to exit", agent.Exited)
		return time.Since(start)
	}

	t.Run("finishes within the grace period", func(t *testing.T) {
		agent := startAgent(t, ns, "db")
		release := stallDump(t, f.db)
		r := kubectl(t, "", "stash", "-n", ns, "trigger", "term")
		mustOK(t, r, "trigger")
		name := createdName(r.stdout)
		waitDumping(t, agent)
		sigterm(agent)
		time.Sleep(2 * time.Second)
		release()
		took := waitExit(agent, 45*time.Second)
		t.Logf("agent exited %s after the dump resumed", took.Round(100*time.Millisecond))
		bs := waitPhase(t, f, name, 10*time.Second, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
		if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded {
			t.Fatalf("session %s is %s: %s", name, bs.Status.Phase, bs.Status.Message)
		}
	})

	t.Run("stopped after the grace period", func(t *testing.T) {
		agent := startAgent(t, ns, "db")
		release := stallDump(t, f.db)
		r := kubectl(t, "", "stash", "-n", ns, "trigger", "term")
		mustOK(t, r, "trigger")
		name := createdName(r.stdout)
		waitDumping(t, agent)
		at := sigterm(agent)
		waitExit(agent, 60*time.Second) // the Deployment allows 60s
		t.Logf("agent exited %s after SIGTERM", time.Since(at).Round(100*time.Millisecond))
		bs := waitPhase(t, f, name, 5*time.Second, stashv1beta1.BackupSessionFailed, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionRunning)
		if bs.Status.Phase != stashv1beta1.BackupSessionFailed || !strings.Contains(bs.Status.Message, "SIGTERM") || !strings.Contains(bs.Status.Message, "no snapshot was saved") {
			t.Fatalf("session %s is %s: %q", name, bs.Status.Phase, bs.Status.Message)
		}
		if locks, _ := os.ReadDir(filepath.Join(dir, "locks")); len(locks) != 0 {
			t.Errorf("%d restic locks left after SIGTERM", len(locks))
		}
		release()
		startAgent(t, ns, "db")
		waitPhase(t, f, name+"-retry-1", 2*time.Minute, stashv1beta1.BackupSessionSucceeded)
		resticCheck(t, dir, f.repoPass)
	})
}

// TestTimeoutStopsHangingDump: a dump blocked on a locked table hangs; at
// spec.timeOut the dump and restic are stopped, no process is left, and
// the session is Failed with DeadlineExceeded. The dump waits on its
// database with its pipe empty, so a stall timeout far shorter than the
// timeOut does not take it for a stalled stream.
func TestTimeoutStopsHangingDump(t *testing.T) {
	f := newBackupFixture(t, "hang-e2e", s.env.MariaDBs[1])
	ns := f.ns
	dir := t.TempDir()
	f.localRepo(t, dir)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "hang", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop", "--session-timeout", "8s", "--stall-timeout", "2s"), "bc")
	agent := startAgent(t, ns, "db")
	stallDump(t, f.db)
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "hang")
	mustOK(t, r, "trigger")
	name := createdName(r.stdout)
	waitDumping(t, agent)
	bs := waitPhase(t, f, name, 60*time.Second, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	if bs.Status.Phase != stashv1beta1.BackupSessionFailed || !meta(bs.Status.Conditions, stashv1beta1.ConditionDeadlineExceeded) {
		t.Fatalf("session %s is %s without DeadlineExceeded: %s", name, bs.Status.Phase, bs.Status.Message)
	}
	if !strings.Contains(bs.Status.Message, "timeOut 8s") || strings.Contains(bs.Status.Message, "stalled") {
		t.Errorf("message: %s", bs.Status.Message)
	}
	for _, prog := range []string{"restic", "mysqldump", "mariadb-dump"} {
		if pid := findProcess(prog, agent.Scratch); pid != 0 {
			t.Errorf("%s (pid %d) still runs after the timeOut", prog, pid)
		}
	}
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 0 {
		t.Errorf("%d snapshots after a timed-out backup", n)
	}
	if locks, _ := os.ReadDir(filepath.Join(dir, "locks")); len(locks) != 0 {
		t.Errorf("%d restic locks left after the timeOut", len(locks))
	}
}

// TestTwoAgentsInitOneRepository: two databases back up into one new
// Repository at the same moment. restic init is not safe against itself
// (both would write a key and a config), so the agents take the
// Repository's init Lease: one initialises, the other finds the repository,
// and it ends with one key, both snapshots and a clean check.
func TestTwoAgentsInitOneRepository(t *testing.T) {
	f := newBackupFixture(t, "sharedinit-e2e", s.env.MariaDBs[1])
	ns := f.ns
	dir := t.TempDir()
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "db2", "--url", fmt.Sprintf("tcp(%s)/", f.db.Addr()), "--secret", "db-auth", "--type", "mariadb", "--version", "10.11"), "second appbinding")
	f.localRepo(t, dir)
	for _, c := range [][2]string{{"one", "db"}, {"two", "db2"}} {
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", c[0], "--target", "appbinding/"+c[1], "--repository", "repo",
			"--param", "args=--databases shop"), "backupconfig "+c[0])
	}
	startAgent(t, ns, "db")
	startAgent(t, ns, "db2")
	// Both sessions first, so that both agents find no repository at once.
	var names []string
	for _, c := range []string{"one", "two"} {
		r := kubectl(t, "", "stash", "-n", ns, "trigger", c)
		mustOK(t, r, "trigger "+c)
		names = append(names, createdName(r.stdout))
	}
	for _, name := range names {
		bs := waitPhase(t, f, name, 2*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
		if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded {
			t.Fatalf("session %s: %s: %s", name, bs.Status.Phase, bs.Status.Message)
		}
	}
	keys := exec.Command(filepath.Join(testenv.RepoRoot(), "bin", "restic"), "-r", dir, "--no-cache", "key", "list", "--json")
	keys.Env = append(os.Environ(), "RESTIC_PASSWORD="+f.repoPass)
	out, err := keys.Output()
	if err != nil {
		t.Fatalf("restic key list: %v", err)
	}
	if n := strings.Count(string(out), `"id":`); n != 1 {
		t.Fatalf("the repository has %d keys, want 1 (two inits raced):\n%s", n, out)
	}
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 2 {
		t.Fatalf("%d snapshots, want 2", n)
	}
	resticCheck(t, dir, f.repoPass)
}
