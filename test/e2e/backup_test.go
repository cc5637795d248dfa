package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumptee"
	"github.com/kubectl-stash/kubectl-stash/pkg/monitoring"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

const sampleSQL = `
CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE IF NOT EXISTS customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), note TEXT, created DATETIME(6)) ENGINE=InnoDB;
INSERT IGNORE INTO customers (id, name, note, created) VALUES (1, 'Ada', 'first 🐬', '2024-01-02 03:04:05.123456'), (2, 'Grace', 'O''Brien; DROP TABLE x', '2024-05-06 07:08:09.000001');
CREATE TABLE IF NOT EXISTS big (id INT PRIMARY KEY AUTO_INCREMENT, payload BLOB) ENGINE=InnoDB;
INSERT INTO big (payload) SELECT RANDOM_BYTES(1024) FROM seq_1_to_2000 WHERE (SELECT COUNT(*) FROM big) = 0;
CREATE VIEW IF NOT EXISTS v_customers AS SELECT id, name FROM customers;
CREATE DATABASE IF NOT EXISTS inventory;
CREATE TABLE IF NOT EXISTS inventory.items (sku VARCHAR(20) PRIMARY KEY, qty INT);
INSERT IGNORE INTO inventory.items VALUES ('a-1', 3), ('b-2', 7);
`

// backupFixture is a namespace with a database, its AppBinding and a running agent.
type backupFixture struct {
	ns       string
	db       *testenv.MariaDB
	repoPass string
	st       *client.Stash
}

// localRepo creates the Secret repo-creds with the fixture's restic
// password and the Repository repo on a local path.
func (f *backupFixture) localRepo(t *testing.T, dir string) {
	t.Helper()
	createSecret(t, f.ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass})
	mustOK(t, kubectl(t, "", "stash", "-n", f.ns, "create", "repository", "repo", "--backend", "local", "--path", dir, "--secret", "repo-creds"), "repo")
}

func newBackupFixture(t *testing.T, ns string, db *testenv.MariaDB) *backupFixture {
	t.Helper()
	newNamespace(t, ns)
	if _, err := db.Exec(context.Background(), sampleSQL); err != nil {
		t.Fatal(err)
	}
	createSecret(t, ns, "db-auth", map[string]string{"username": db.User, "password": db.Password})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "db", "--url", fmt.Sprintf("tcp(%s)/", db.Addr()), "--secret", "db-auth", "--type", "mariadb", "--version", "10.11"), "create appbinding")
	st, err := client.NewStash(s.env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return &backupFixture{ns: ns, db: db, repoPass: "repo-" + ns + "-Pa$$ word", st: st}
}

// dumpLines is a direct mysqldump with the agent's flags, minus the timestamp line.
func directDump(t *testing.T, db *testenv.MariaDB, args ...string) string {
	t.Helper()
	full := append([]string{"--defaults-extra-file=" + db.OptionFile(), "--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--default-character-set=utf8mb4", "--flush-privileges"}, args...)
	out, err := exec.Command("mysqldump", full...).Output()
	if err != nil {
		t.Fatalf("direct mysqldump: %v", err)
	}
	return stripTimestamp(string(out))
}

func stripTimestamp(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "-- Dump completed on") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// resticEnv is how a user runs stock restic against a repository.
func resticDump(t *testing.T, repo, password string, extraEnv []string, file string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "bin", "restic"), "-r", repo, "--no-cache", "dump", "latest", file)
	cmd.Env = append(os.Environ(), append(extraEnv, "RESTIC_PASSWORD="+password)...)
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("restic dump from %s: %v %s", repo, err, msg)
	}
	return snapshotDump(t, string(out))
}

// snapshotDump is a snapshot's dump as mysqldump wrote it, without the
// timestamp: the manifest the agent appends (its last line) must be there,
// and is taken off.
func snapshotDump(t *testing.T, s string) string {
	t.Helper()
	i := strings.LastIndex(s, "\n"+dumptee.Marker)
	if i < 0 || strings.Count(s[i+1:], "\n") != 1 {
		t.Errorf("the snapshot's dump does not end with its manifest line")
		return stripTimestamp(s)
	}
	return stripTimestamp(s[:i])
}

func resticSnapshots(t *testing.T, repo, password string, extraEnv []string) int {
	t.Helper()
	ids, err := listSnapshots(t, repo, password, extraEnv)
	if err != nil {
		return 0 // not initialised: no snapshots
	}
	return len(ids)
}

// listSnapshots runs `restic snapshots --json` with extra args (filters)
// and returns the snapshot IDs.
func listSnapshots(t *testing.T, repo, password string, extraEnv []string, args ...string) ([]string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "bin", "restic"), append([]string{"-r", repo, "--no-cache", "snapshots", "--json"}, args...)...)
	cmd.Env = append(os.Environ(), append(extraEnv, "RESTIC_PASSWORD="+password)...)
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	var snaps []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &snaps); err != nil {
		t.Fatalf("restic snapshots --json: %v", err)
	}
	ids := make([]string, len(snaps))
	for i, s := range snaps {
		ids[i] = s.ID
	}
	return ids, nil
}

func TestBackupToLocalRestAndS3(t *testing.T) {
	f := newBackupFixture(t, "backup-e2e", s.env.MariaDBs[0])
	ns := f.ns
	localDir := t.TempDir()
	bucket := "stash-e2e"
	if err := s.env.S3.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	createSecret(t, ns, "local-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass})
	createSecret(t, ns, "rest-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass})
	createSecret(t, ns, "s3-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass, "AWS_ACCESS_KEY_ID": s.env.S3.AccessKey, "AWS_SECRET_ACCESS_KEY": s.env.S3.SecretKey})
	createSecret(t, ns, "s3-incomplete", map[string]string{"RESTIC_PASSWORD": f.repoPass, "AWS_ACCESS_KEY_ID": "x"})

	// A Secret without a key the backend needs is named in the error.
	r := kubectl(t, "", "stash", "-n", ns, "create", "repository", "bad", "--backend", "s3", "--endpoint", s.env.S3.Endpoint, "--bucket", bucket, "--secret", "s3-incomplete")
	if r.code != 2 || !strings.Contains(r.stderr, "AWS_SECRET_ACCESS_KEY") {
		t.Fatalf("create repository with an incomplete Secret: exit %d, stderr %q", r.code, r.stderr)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "local-repo", "--backend", "local", "--path", localDir, "--secret", "local-creds"), "create local repo")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "rest-repo", "--backend", "rest", "--url", s.env.Rest.URL+"/"+ns, "--secret", "rest-creds"), "create rest repo")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "s3-repo", "--backend", "s3", "--endpoint", s.env.S3.Endpoint, "--bucket", bucket, "--prefix", "/"+ns, "--secret", "s3-creds"), "create s3 repo")

	args := "args=--databases shop inventory"
	for _, repo := range []string{"local-repo", "rest-repo", "s3-repo"} {
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "to-"+repo, "--target", "appbinding/db", "--repository", repo,
			"--param", args, "--keep-last", "2", "--prune", "--backup-history-limit", "2", "--pushgateway", s.env.Pushgateway.URL), "create backupconfig "+repo)
	}
	agent := startAgent(t, ns, "db")

	want := directDump(t, f.db, "--databases", "shop", "inventory")
	repos := map[string][2]any{
		"local-repo": {localDir, []string(nil)},
		"rest-repo":  {"rest:" + s.env.Rest.URL + "/" + ns, []string(nil)},
		"s3-repo":    {"s3:" + s.env.S3.Endpoint + "/" + bucket + "/" + ns, []string{"AWS_ACCESS_KEY_ID=" + s.env.S3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.env.S3.SecretKey}},
	}
	for repo, loc := range repos {
		t.Run(repo, func(t *testing.T) {
			r := kubectl(t, "", "stash", "-n", ns, "trigger", "to-"+repo, "--wait", "--timeout", "3m")
			mustOK(t, r, "trigger --wait")
			if !strings.Contains(r.stdout, "Succeeded") {
				t.Fatalf("trigger output lacks Succeeded:\n%s", r.stdout)
			}
			got := resticDump(t, loc[0].(string), f.repoPass, loc[1].([]string), "db.sql")
			if got != want {
				t.Fatalf("restic dump of the snapshot differs from a direct mysqldump (%d vs %d bytes)", len(got), len(want))
			}
		})
	}

	// Statuses: the session's stats and the Repository's.
	// The Repository's is written just after the session's.
	ctx := context.Background()
	var repo *stashv1alpha1.Repository
	eventually(t, 20*time.Second, "the Repository status", func() bool {
		var err error
		repo, err = f.st.Repositories(ns).Get(ctx, "s3-repo")
		return err == nil && repo.Status.SnapshotCount == 1 && repo.Status.LastBackupTime != nil && repo.Status.TotalSize != ""
	})
	list, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{LabelSelector: stashv1beta1.LabelInvokerName + "=to-s3-repo"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("sessions of to-s3-repo: %v, %d", err, len(list.Items))
	}
	bs := list.Items[0]
	if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded || len(bs.Status.Targets) != 1 || len(bs.Status.Targets[0].Stats) != 1 ||
		len(bs.Status.Targets[0].Stats[0].Snapshots) != 1 || bs.Status.Targets[0].Stats[0].Snapshots[0].Name == "" {
		t.Errorf("session status lacks the snapshot stats: %+v", bs.Status)
	}

	t.Run("retention keeps exactly keep-last", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "to-local-repo", "--wait", "--timeout", "3m"), "trigger")
		}
		if n := resticSnapshots(t, localDir, f.repoPass, nil); n != 2 {
			t.Fatalf("after 3 backups with --keep-last 2: %d snapshots", n)
		}
		// backupHistoryLimit 2: only two finished sessions remain, once the
		// history is trimmed just after the session ends.
		var left int
		ok := poll(20*time.Second, func() bool {
			l, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{LabelSelector: stashv1beta1.LabelInvokerName + "=to-local-repo"})
			left = len(l.Items)
			return err == nil && left == 2
		})
		if !ok {
			t.Fatalf("backupHistoryLimit 2: %d sessions remain", left)
		}
	})

	t.Run("metrics reach the Pushgateway", func(t *testing.T) {
		waitMetric(t, "stash_backup_session_success", map[string]string{"invoker_name": "to-s3-repo", "namespace": ns}, "1")
		waitMetric(t, "stash_appscode_com_backupsession_success", map[string]string{"invoker_name": "to-s3-repo"}, "1")
		// Repository metrics are pushed just after the session ends.
		eventually(t, 20*time.Second, "the repository's metrics", func() bool {
			v := pushgatewayValue(t, "stash_repository_snapshot_count", map[string]string{"name": "local-repo"})
			return v == "2"
		})
		resp, err := http.Get("http://" + agent.Listen + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "stash_backup_session_success") {
			t.Fatalf("the agent's /metrics lacks stash_backup_session_success")
		}
		// Integrity comes with a check or a verification (TestVerification).
		queriesHaveData(t, "stash_backup_", "stash_repository_size", "stash_repository_snapshot")
	})

	t.Run("wrong database password fails with no snapshot", func(t *testing.T) {
		createSecret(t, ns, "db-wrong", map[string]string{"username": f.db.User, "password": "not-the-password"})
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "wrongdb", "--url", f.db.Addr(), "--secret", "db-wrong", "--type", "mariadb"), "appbinding")
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "wrong", "--target", "appbinding/wrongdb", "--repository", "local-repo", "--pushgateway", s.env.Pushgateway.URL), "bc")
		startAgent(t, ns, "wrongdb")
		before := resticSnapshots(t, localDir, f.repoPass, nil)
		r := kubectl(t, "", "stash", "-n", ns, "trigger", "wrong", "--wait", "--timeout", "2m")
		if r.code != 3 || !strings.Contains(r.stderr, "Secret db-wrong") {
			t.Fatalf("trigger with a wrong password: exit %d, want 3 and a message naming Secret db-wrong:\n%s", r.code, r.stderr)
		}
		if strings.Contains(r.stderr+r.stdout, "not-the-password") {
			t.Fatalf("the password leaked into the output")
		}
		if after := resticSnapshots(t, localDir, f.repoPass, nil); after != before {
			t.Fatalf("a failed backup changed the snapshot count: %d -> %d", before, after)
		}
		waitMetric(t, "stash_backup_session_success", map[string]string{"invoker_name": "wrong"}, "0")
	})

	t.Run("passwords appear in no log, status or Event", func(t *testing.T) {
		assertNoSecrets(t, ns, agent.LogPath, f.db.Password, f.repoPass, s.env.S3.SecretKey)
	})

	t.Run("mysqldump killed mid-stream fails with no snapshot", func(t *testing.T) {
		// Hold a write lock on shop.big so the dump stalls mid-stream, then kill it.
		lock := exec.Command("mariadb", "--defaults-extra-file="+f.db.OptionFile())
		stdin, _ := lock.StdinPipe()
		if err := lock.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { stdin.Close(); _ = lock.Process.Kill(); _ = lock.Wait() }()
		fmt.Fprintln(stdin, "LOCK TABLES shop.big WRITE; SELECT SLEEP(120);")
		time.Sleep(500 * time.Millisecond)
		before := resticSnapshots(t, localDir, f.repoPass, nil)
		r := kubectl(t, "", "stash", "-n", ns, "trigger", "to-local-repo")
		mustOK(t, r, "trigger")
		var pid int
		eventually(t, 60*time.Second, "a running mysqldump", func() bool {
			// This agent's dump: the soak's agent dumps on the same machine.
			pid = findProcess("mysqldump", agent.Scratch)
			if pid == 0 {
				pid = findProcess("mariadb-dump", agent.Scratch)
			}
			return pid > 0
		})
		time.Sleep(300 * time.Millisecond)
		_ = killPid(pid)
		name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(r.stdout), "backupsession.stash.appscode.com/"), " created")
		var msg string
		eventually(t, 60*time.Second, "the session to fail", func() bool {
			bs, err := f.st.BackupSessions(ns).Get(ctx, name)
			msg = bs.Status.Message
			return err == nil && bs.Status.Phase == stashv1beta1.BackupSessionFailed
		})
		if !strings.Contains(msg, "mysqldump failed") {
			t.Errorf("failure message does not say the dump failed: %q", msg)
		}
		if after := resticSnapshots(t, localDir, f.repoPass, nil); after != before {
			t.Fatalf("a killed dump left a snapshot: %d -> %d", before, after)
		}
	})
}

// assertNoSecrets searches the agent's log, every status and every Event in
// the namespace for the database and repository passwords.
func assertNoSecrets(t *testing.T, ns string, logPath string, secrets ...string) {
	t.Helper()
	var b []byte
	if logPath != "" {
		var err error
		if b, err = os.ReadFile(logPath); err != nil {
			t.Fatal(err)
		}
	}
	r := kubectl(t, "", "get", "-n", ns, "backupsessions,restoresessions,backupconfigurations,repositories,appbindings,events", "-o", "json")
	mustOK(t, r, "get objects")
	for _, sec := range secrets {
		if strings.Contains(string(b), sec) {
			t.Errorf("a password appears in the agent's log %s", logPath)
		}
		if strings.Contains(r.stdout, sec) {
			t.Errorf("a password appears in a status, spec or Event in namespace %s", ns)
		}
	}
}

func TestScheduleCreatesSessionsAndPauseStopsThem(t *testing.T) {
	f := newBackupFixture(t, "schedule-e2e", s.env.MariaDBs[1])
	ns := f.ns
	dir := t.TempDir()
	createSecret(t, ns, "local-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", dir, "--secret", "local-creds"), "repo")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "every5", "--target", "appbinding/db", "--repository", "repo",
		"--schedule", "@every 5s", "--param", "args=--databases inventory", "--backup-history-limit", "20"), "bc")
	startAgent(t, ns, "db")
	ctx := context.Background()
	count := func() (n int, succeeded int) {
		l, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, bs := range l.Items {
			if bs.Status.Phase == stashv1beta1.BackupSessionSucceeded {
				succeeded++
			}
			if !strings.HasPrefix(bs.Name, "every5-") {
				t.Errorf("scheduled session name %q is not derived from the config and slot", bs.Name)
			}
		}
		return len(l.Items), succeeded
	}
	eventually(t, 90*time.Second, "two scheduled sessions to succeed", func() bool { _, ok := count(); return ok >= 2 })
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "pause", "backupconfig", "every5"), "pause")
	time.Sleep(2 * time.Second) // the agent sees the change
	n1, _ := count()
	time.Sleep(11 * time.Second)
	if n2, _ := count(); n2 != n1 {
		t.Fatalf("paused config still made sessions: %d -> %d", n1, n2)
	}
	if n := resticSnapshots(t, dir, f.repoPass, nil); n < 2 {
		t.Fatalf("scheduled backups made %d snapshots", n)
	}
}

// queriesHaveData checks that every alert rule and dashboard query reading
// a metric with one of these prefixes finds it, with the labels it uses,
// on the Pushgateway. Other tests' series count too: the check is that the
// agent pushes what the queries read, not which session pushed it.
func queriesHaveData(t *testing.T, prefixes ...string) {
	t.Helper()
	covers := func(m string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(m, p) {
				return true
			}
		}
		return false
	}
	var problems []string
	// The pushes of a session's end arrive a moment after its status.
	if !poll(20*time.Second, func() bool {
		var err error
		problems, err = monitoring.Check([]byte(pushgatewayText(t)), covers)
		if err != nil {
			t.Fatal(err)
		}
		return len(problems) == 0
	}) {
		t.Errorf("queries read what the Pushgateway lacks:\n%s", strings.Join(problems, "\n"))
	}
}

// pushgatewayText is everything the Pushgateway holds.
func pushgatewayText(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(s.env.Pushgateway.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitMetric waits for a pushed metric to reach want: the agent pushes
// just after it writes the session's final status.
func waitMetric(t *testing.T, name string, labels map[string]string, want string) {
	t.Helper()
	var v string
	if !poll(20*time.Second, func() bool { v = pushgatewayValue(t, name, labels); return v == want }) {
		t.Fatalf("%s%v = %q, want %s", name, labels, v, want)
	}
}

// pushgatewayValue reads one metric's value from the Pushgateway's API.
func pushgatewayValue(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	resp, err := http.Get(s.env.Pushgateway.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for k, v := range labels {
			ok = ok && strings.Contains(line, fmt.Sprintf("%s=%q", k, v))
		}
		if ok {
			f := strings.Fields(line)
			return f[len(f)-1]
		}
	}
	return ""
}

// findProcess returns the pid of a process named prog whose argv has every needle.
func findProcess(prog string, needles ...string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.ReplaceAll(string(b), "\x00", " ")
		first, _, _ := strings.Cut(argv, " ")
		ok := filepath.Base(first) == prog
		for _, n := range needles {
			ok = ok && strings.Contains(argv, n)
		}
		if ok {
			return pid
		}
	}
	return 0
}

func killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
