// Package soak runs one agent through many scheduled sessions against a
// small database and checks that every session succeeds, that the session
// history stays at its limit, and that the agent's memory and goroutines
// stay flat. It has its own environment, so `go test ./...` runs it next
// to test/e2e.
package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// sessions is how many scheduled sessions the soak waits for; the schedule
// leaves room for a session to end before the next slot.
const (
	sessions     = 200
	every        = 4 * time.Second
	historyLimit = 5
)

func TestSoak(t *testing.T) {
	n := sessions
	if v, err := strconv.Atoi(os.Getenv("STASH_SOAK_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	root := testenv.RepoRoot()
	binDir := t.TempDir()
	if err := testenv.BuildBinaries(binDir); err != nil {
		t.Fatal(err)
	}
	tools := filepath.Join(root, "bin")
	path := binDir + string(os.PathListSeparator) + tools + string(os.PathListSeparator) + os.Getenv("PATH")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	env, err := testenv.Start(ctx, testenv.Options{BinDir: tools, MariaDBs: 1})
	cancel()
	if env != nil {
		t.Cleanup(env.Stop)
	}
	if err != nil {
		t.Fatalf("start environment: %v", err)
	}
	db := env.MariaDBs[0]
	if _, err := db.Exec(context.Background(), "CREATE DATABASE soak; CREATE TABLE soak.t (id INT PRIMARY KEY, v VARCHAR(40)); USE soak; INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_1000;"); err != nil {
		t.Fatal(err)
	}
	plugin := func(args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "kubectl-stash"), args...)
		cmd.Env = append(os.Environ(), "PATH="+path, "KUBECONFIG="+env.Control.Kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl stash %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	cs, err := kubernetes.NewForConfig(env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.NewStash(env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	const ns = "soak"
	plugin("install", "--timeout=90s")
	if _, err := cs.CoreV1().Namespaces().Create(bg, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	repoPass := "soak-repo-password"
	for name, data := range map[string]map[string]string{
		"db-auth":    {"username": db.User, "password": db.Password},
		"repo-creds": {"RESTIC_PASSWORD": repoPass},
	} {
		if _, err := cs.CoreV1().Secrets(ns).Create(bg, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	repoDir := t.TempDir()
	plugin("-n", ns, "create", "appbinding", "db", "--url", "mysql://"+db.Addr(), "--secret", "db-auth", "--type", "mariadb", "--version", "10.11")
	plugin("-n", ns, "create", "repository", "repo", "--backend", "local", "--path", repoDir, "--secret", "repo-creds")
	plugin("-n", ns, "create", "backupconfig", "soak", "--target", "appbinding/db", "--repository", "repo",
		"--schedule", fmt.Sprintf("@every %s", every), "--param", "args=--databases soak", "--backup-history-limit", strconv.Itoa(historyLimit), "--catch-up", "none")

	agent, err := env.Control.StartAgent(bg, testenv.AgentOptions{Namespace: ns, Deployment: contract.AgentName("db"), BinDir: binDir, Path: path, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Stop(45 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(agent.LogPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("agent log:\n%s", strings.Join(lines, "\n"))
		}
	})

	// Phases seen per session; finished sessions are trimmed to the history
	// limit, so they are recorded while they exist.
	seen := map[string]stashv1beta1.BackupSessionPhase{}
	warm := map[string]bool{}
	var maxListed int
	poll := func() int {
		l, err := st.BackupSessions(ns).List(bg, metav1.ListOptions{})
		if err != nil {
			return countSucceeded(seen)
		}
		finished := 0
		for _, bs := range l.Items {
			if p := bs.Status.Phase; !warm[bs.Name] && p != "" && p != stashv1beta1.BackupSessionPending && p != stashv1beta1.BackupSessionRunning {
				seen[bs.Name] = p
				finished++
			}
		}
		maxListed = max(maxListed, finished)
		return countSucceeded(seen)
	}
	wait := func(want int, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for poll() < want {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %d of %d sessions succeeded; phases: %v", timeout, countSucceeded(seen), want, summary(seen))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// The first sessions initialise the repository and warm the caches; a
	// slot may be Skipped while the first one runs. The soak counts after.
	warmup := 5
	wait(warmup, 2*time.Minute)
	first := sample(t, agent)
	for name := range seen {
		warm[name] = true
	}
	warmSucceeded := countSucceeded(seen)
	clear(seen)
	started := time.Now()
	wait(n, time.Duration(n)*every*2+2*time.Minute)
	last := sample(t, agent)
	plugin("-n", ns, "pause", "backupconfig", "soak")
	elapsed := time.Since(started)
	// Let the session in flight end.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l, err := st.BackupSessions(ns).List(bg, metav1.ListOptions{})
		busy := err != nil
		for _, bs := range l.Items {
			if bs.Status.Phase == stashv1beta1.BackupSessionRunning || bs.Status.Phase == "" || bs.Status.Phase == stashv1beta1.BackupSessionPending {
				busy = true
			}
		}
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a session was still running 2 minutes after pausing")
		}
		time.Sleep(500 * time.Millisecond)
	}
	poll()

	t.Logf("%d sessions in %s; agent after %d sessions: RSS %.1f MiB, %d goroutines; after %d: RSS %.1f MiB, %d goroutines",
		countSucceeded(seen), elapsed.Round(time.Second), warmup, mib(first.rss), first.goroutines, countSucceeded(seen), mib(last.rss), last.goroutines)
	for name, p := range seen {
		if p != stashv1beta1.BackupSessionSucceeded {
			bs, _ := st.BackupSessions(ns).Get(bg, name)
			msg := ""
			if bs != nil {
				msg = bs.Status.Message
			}
			t.Errorf("session %s is %s: %s", name, p, msg)
		}
	}
	if got, want := countSnapshots(t, tools, repoDir, repoPass), countSucceeded(seen)+warmSucceeded; got != want {
		t.Errorf("%d snapshots for %d succeeded sessions", got, want)
	}
	if maxListed > historyLimit+1 {
		t.Errorf("up to %d finished sessions were kept; backupHistoryLimit is %d", maxListed, historyLimit)
	}
	// The history is trimmed just after a session's status is written.
	left := -1
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		l, err := st.BackupSessions(ns).List(bg, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		left = len(l.Items)
		if left <= historyLimit || time.Now().After(end) {
			break
		}
	}
	if left > historyLimit {
		t.Errorf("%d sessions left after pausing; backupHistoryLimit is %d", left, historyLimit)
	}
	// Flat: goroutines back to where they were (allowing a few in flight),
	// memory within a margin of GC noise.
	if last.goroutines > first.goroutines+10 {
		t.Errorf("goroutines grew from %d to %d over %d sessions", first.goroutines, last.goroutines, n)
	}
	if last.rss > first.rss+first.rss/2+8<<20 {
		t.Errorf("RSS grew from %.1f MiB to %.1f MiB over %d sessions", mib(first.rss), mib(last.rss), n)
	}
}

type usage struct {
	rss        int64
	goroutines int
}

// sample reads the agent's RSS from /proc and its goroutines from /metrics.
func sample(t *testing.T, agent *testenv.AgentProcess) usage {
	t.Helper()
	var u usage
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", agent.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			u.rss = kb << 10
		}
	}
	resp, err := http.Get("http://" + agent.Listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			u.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if u.rss == 0 || u.goroutines == 0 {
		t.Fatalf("could not read the agent's RSS (%d) or goroutines (%d)", u.rss, u.goroutines)
	}
	return u
}

func countSucceeded(seen map[string]stashv1beta1.BackupSessionPhase) int {
	n := 0
	for _, p := range seen {
		if p == stashv1beta1.BackupSessionSucceeded {
			n++
		}
	}
	return n
}

func summary(seen map[string]stashv1beta1.BackupSessionPhase) map[stashv1beta1.BackupSessionPhase]int {
	out := map[stashv1beta1.BackupSessionPhase]int{}
	for _, p := range seen {
		out[p]++
	}
	return out
}

func countSnapshots(t *testing.T, tools, repo, password string) int {
	t.Helper()
	cmd := exec.Command(filepath.Join(tools, "restic"), "-r", repo, "--no-cache", "snapshots", "--json")
	cmd.Env = append(os.Environ(), "RESTIC_PASSWORD="+password)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("restic snapshots: %v", err)
	}
	var snaps []json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &snaps); err != nil {
		t.Fatal(err)
	}
	return len(snaps)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
