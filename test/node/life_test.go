package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
)

// agentFixture is a restricted namespace with a MariaDB Pod, an S3
// Repository and a BackupConfiguration whose agent runs as a Pod.
type agentFixture struct {
	ns  string
	db  *mariadb
	obj *s3
	st  *client.Stash
	env []string // restic's environment for the Repository
	url string   // restic's URL for the Repository
}

func newAgentFixture(t *testing.T, ns string, bcArgs ...string) *agentFixture {
	t.Helper()
	restrictedNamespace(t, ns)
	f := &agentFixture{ns: ns}
	f.db = startMariaDB(t, ns, "mariadb")
	f.db.sql(t, sampleSQL)
	f.obj = startS3(t)
	f.obj.bucket(t, "backups")
	pw := "repo pw " + ns
	createSecret(t, ns, "s3-creds", map[string]string{"RESTIC_PASSWORD": pw, "AWS_ACCESS_KEY_ID": f.obj.access, "AWS_SECRET_ACCESS_KEY": f.obj.secret})
	createSecret(t, ns, "db-auth", map[string]string{"username": "root", "password": f.db.password})
	f.env = []string{"RESTIC_PASSWORD=" + pw, "AWS_ACCESS_KEY_ID=" + f.obj.access, "AWS_SECRET_ACCESS_KEY=" + f.obj.secret}
	f.url = "s3:" + f.obj.endpoint + "/backups/" + ns
	mustOK(t, kubectl(t, "", "stash", "install"), "install")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "s3",
		"--endpoint", f.obj.endpoint, "--bucket", "backups", "--prefix", ns, "--secret", "s3-creds"), "repository")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "mysql", "--service", "mariadb:3306",
		"--secret", "db-auth", "--type", "mariadb", "--version", "10.11"), "appbinding")
	args := append([]string{"stash", "-n", ns, "create", "backupconfig", "bc", "--target", "appbinding/mysql", "--repository", "repo"}, bcArgs...)
	mustOK(t, kubectl(t, "", args...), "backupconfig")
	st, err := client.NewStash(s.node.Admin)
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	return f
}

// lockOrders holds a write lock on shop.orders from a session in the
// database Pod, so a dump of shop stops there mid-stream. release kills
// that session from another one; it is safe to call twice.
func (f *agentFixture) lockOrders(t *testing.T) (release func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, kubectlBin(), "exec", "-i", "-n", f.ns, f.db.name, "-c", "mariadb", "--",
		"sh", "-c", `MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb -uroot`)
	cmd.Env = append(os.Environ(), "PATH="+s.path, "KUBECONFIG="+s.node.Kubeconfig)
	cmd.Stdin = strings.NewReader("LOCK TABLES shop.orders WRITE; SELECT SLEEP(600) AS held_by_stash_test;\n")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !poll(30*time.Second, func() bool {
		return strings.Contains(f.db.sql(t, "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE '%held_by_stash_test%' AND info NOT LIKE '%processlist%'"), "1")
	}) {
		t.Fatal("the lock on shop.orders was not taken")
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		f.db.sql(t, "SELECT CONCAT('KILL ', id, ';') FROM information_schema.processlist WHERE info LIKE '%held_by_stash_test%' AND info NOT LIKE '%processlist%' INTO @k; EXECUTE IMMEDIATE COALESCE(@k, 'DO 0');")
		cancel()
		_ = cmd.Wait()
	}
	t.Cleanup(release)
	return release
}

func (f *agentFixture) trigger(t *testing.T) string {
	t.Helper()
	out := mustOK(t, kubectl(t, "", "stash", "-n", f.ns, "trigger", "bc"), "trigger")
	fields := strings.Fields(out)
	if len(fields) == 0 {
		t.Fatalf("trigger printed nothing")
	}
	_, name, _ := strings.Cut(fields[0], "/")
	return name
}

func (f *agentFixture) waitPhase(t *testing.T, name string, timeout time.Duration, want ...stashv1beta1.BackupSessionPhase) *stashv1beta1.BackupSession {
	t.Helper()
	var bs *stashv1beta1.BackupSession
	ok := poll(timeout, func() bool {
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
	if !ok {
		phase, msg := "missing", ""
		if bs != nil {
			phase, msg = string(bs.Status.Phase), bs.Status.Message
		}
		t.Fatalf("session %s/%s is %s after %s, want %v: %s", f.ns, name, phase, timeout, want, msg)
	}
	return bs
}

// waitDumping waits until the agent's dump runs inside its container.
func (f *agentFixture) waitDumping(t *testing.T) {
	t.Helper()
	if !poll(60*time.Second, func() bool { return agentProcess(f.ns, "mariadb-dump", "mysqldump") > 0 }) {
		t.Fatal("the dump never ran in the agent's container")
	}
}

// agentProcess finds a process of the agent's container, on the node, by
// its program name and the Pod's namespace in its environment.
func agentProcess(ns string, progs ...string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(string(cmdline), "\x00")
		for _, p := range progs {
			if filepath.Base(argv[0]) != p {
				continue
			}
			env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
			if strings.Contains(string(env), "POD_NAMESPACE="+ns+"\x00") {
				var pid int
				fmt.Sscan(e.Name(), &pid)
				return pid
			}
		}
	}
	return 0
}

// snapshotsBySession counts the Repository's snapshots per session tag.
func (f *agentFixture) snapshotsBySession(t *testing.T) map[string]int {
	t.Helper()
	var snaps []struct{ Tags []string }
	if err := json.Unmarshal([]byte(restic(t, f.env, "-r", f.url, "snapshots", "--json", "--no-lock")), &snaps); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, sn := range snaps {
		for _, tag := range sn.Tags {
			if name, ok := strings.CutPrefix(tag, "session="); ok {
				out[name]++
			}
		}
	}
	return out
}

// TestPodDeletedMidBackup: `kubectl delete pod` sends SIGTERM; the agent
// drains for its grace period, fails the session with the cause and no
// snapshot, removes restic's lock, and the new Pod runs the retry.
func TestPodDeletedMidBackup(t *testing.T) {
	f := newAgentFixture(t, "life-delete", "--max-retry", "1", "--retry-delay", "1s")
	pod := agentPod(t, f.ns, "mysql", 2*time.Minute)
	release := f.lockOrders(t)
	name := f.trigger(t)
	f.waitDumping(t)
	at := time.Now()
	mustOK(t, kubectl(t, "", "-n", f.ns, "delete", "pod", pod.Name, "--wait=false"), "delete pod")
	bs := f.waitPhase(t, name, 75*time.Second, stashv1beta1.BackupSessionFailed, stashv1beta1.BackupSessionSucceeded)
	t.Logf("session %s settled %s after the pod was deleted: %s", name, time.Since(at).Round(100*time.Millisecond), bs.Status.Message)
	if bs.Status.Phase != stashv1beta1.BackupSessionFailed || !strings.Contains(bs.Status.Message, "SIGTERM") || !strings.Contains(bs.Status.Message, "no snapshot was saved") {
		t.Fatalf("session %s is %s: %q", name, bs.Status.Phase, bs.Status.Message)
	}
	if locks := restic(t, f.env, "-r", f.url, "list", "locks", "--no-lock"); strings.TrimSpace(locks) != "" {
		t.Errorf("restic locks left after the drain: %s", locks)
	}
	release()
	f.waitPhase(t, name+"-retry-1", 3*time.Minute, stashv1beta1.BackupSessionSucceeded)
	if got := f.snapshotsBySession(t); got[name] != 0 || got[name+"-retry-1"] != 1 {
		t.Fatalf("snapshots by session: %v", got)
	}
}

// TestContainerKilledMidBackup: the container dies (OOM, a crash), not the
// pod; the kubelet restarts it, and the session it left Running is settled.
func TestContainerKilledMidBackup(t *testing.T) {
	f := newAgentFixture(t, "life-kill", "--max-retry", "1", "--retry-delay", "1s")
	pod := agentPod(t, f.ns, "mysql", 2*time.Minute)
	release := f.lockOrders(t)
	name := f.trigger(t)
	f.waitDumping(t)
	pid := agentProcess(f.ns, "stash-agent")
	if pid == 0 {
		t.Fatal("no stash-agent process of the pod on the node")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	release()
	if !poll(90*time.Second, func() bool {
		p, err := s.kube.CoreV1().Pods(f.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		return err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1 && p.Status.ContainerStatuses[0].Ready
	}) {
		t.Fatal("the kubelet did not restart the agent's container")
	}
	bs := f.waitPhase(t, name, 2*time.Minute, stashv1beta1.BackupSessionFailed, stashv1beta1.BackupSessionSucceeded)
	t.Logf("orphan %s settled: %s: %s", name, bs.Status.Phase, bs.Status.Message)
	if bs.Status.Phase == stashv1beta1.BackupSessionFailed {
		f.waitPhase(t, name+"-retry-1", 3*time.Minute, stashv1beta1.BackupSessionSucceeded)
	}
}

// TestRolloutRestartRunsNoSessionTwice: during `kubectl rollout restart`
// two agent Pods live at once; a session is still run by one of them only.
func TestRolloutRestartRunsNoSessionTwice(t *testing.T) {
	f := newAgentFixture(t, "life-rollout", "--max-retry", "2", "--retry-delay", "1s", "--backup-history-limit", "10")
	agentPod(t, f.ns, "mysql", 2*time.Minute)
	release := f.lockOrders(t)
	first := f.trigger(t)
	f.waitDumping(t)
	mustOK(t, kubectl(t, "", "-n", f.ns, "rollout", "restart", "deployment/stash-agent-mysql"), "rollout restart")
	time.Sleep(2 * time.Second) // let the new Pod start while the old one still runs the session
	release()
	second := f.trigger(t)
	mustOK(t, kubectl(t, "", "-n", f.ns, "rollout", "status", "deployment/stash-agent-mysql", "--timeout=3m"), "rollout status")
	f.waitPhase(t, first, 3*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	// The second may arrive while the first still runs (the old Pod is
	// finishing it): then it is Skipped, which runs nothing twice either.
	f.waitPhase(t, second, 3*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed, stashv1beta1.BackupSessionSkipped)
	// Wait for every retry to settle too.
	sessions, err := f.st.BackupSessions(f.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A finished session may already be trimmed by the history limit: gone counts as settled.
	for _, bs := range sessions.Items {
		if !poll(3*time.Minute, func() bool {
			got, err := f.st.BackupSessions(f.ns).Get(context.Background(), bs.Name)
			if apierrors.IsNotFound(err) {
				return true
			}
			return err == nil && (got.Status.Phase == stashv1beta1.BackupSessionSucceeded || got.Status.Phase == stashv1beta1.BackupSessionFailed ||
				got.Status.Phase == stashv1beta1.BackupSessionSkipped)
		}) {
			t.Fatalf("session %s/%s did not settle", f.ns, bs.Name)
		}
	}
	for sess, n := range f.snapshotsBySession(t) {
		if n > 1 {
			t.Errorf("session %s was run twice: %d snapshots", sess, n)
		}
	}
	pods, err := s.kube.CoreV1().Pods(f.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=mysql"})
	if err != nil {
		t.Fatal(err)
	}
	var running int
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	if running != 1 {
		t.Errorf("%d agent pods run after the rollout", running)
	}
}
