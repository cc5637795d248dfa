// Package scale measures what one agent per database costs the cluster:
// agents, each with its own AppBinding, BackupConfiguration and Secret, in
// one namespace on a real API server, idle and then all due in one slot.
// Figures come from the API server's own apiserver_request_total, its
// process metrics, etcd's and the agents' /proc.
//
// `make test` runs 20 agents idle for 2 minutes, checks the per-agent
// bounds (issue 20), then puts them all in one slot: every session runs
// once and succeeds. `make bench-scale` does the same with 100 agents idle
// for 5 minutes and writes the scale section of docs/benchmarks.md:
//
//	STASH_SCALE_AGENTS, STASH_SCALE_IDLE, STASH_SCALE_SLOT=0 (no slot), STASH_SCALE_REPORT=path
package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// Per-agent bounds of an idle agent (issue 20).
const (
	maxReadsPerMinute = 1.0 // GET and LIST, the Lease counted
	maxWritesPerSec   = 0.1 // every write, Lease renewals included
)

type settings struct {
	agents         int
	idle, baseline time.Duration
	slot           bool
	report         string
}

func settingsFromEnv(t *testing.T) settings {
	s := settings{agents: 20, idle: 2 * time.Minute, baseline: 45 * time.Second}
	if v := os.Getenv("STASH_SCALE_AGENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("STASH_SCALE_AGENTS=%q: want a positive number", v)
		}
		s.agents = n
	}
	if v := os.Getenv("STASH_SCALE_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 30*time.Second {
			t.Fatalf("STASH_SCALE_IDLE=%q: want a duration of at least 30s", v)
		}
		s.idle = d
		s.baseline = max(s.baseline, d/4)
	}
	s.slot = os.Getenv("STASH_SCALE_SLOT") != "0"
	s.report = os.Getenv("STASH_SCALE_REPORT")
	return s
}

type harness struct {
	t      *testing.T
	env    *testenv.Env
	kube   kubernetes.Interface
	stash  *client.Stash
	binDir string
	path   string
	ns     string
}

func (h *harness) kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.env.BinDir, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "PATH="+h.path, "KUBECONFIG="+h.env.Control.Kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func TestAgentsAtScale(t *testing.T) {
	if _, err := exec.LookPath("mariadb-install-db"); err != nil {
		t.Skip("MariaDB is not installed: run make tools")
	}
	set := settingsFromEnv(t)
	binDir := t.TempDir()
	if err := testenv.BuildBinaries(binDir); err != nil {
		t.Fatal(err)
	}
	env := testenv.ForTest(t, testenv.Options{MariaDBs: 1})
	kube, err := kubernetes.NewForConfig(env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.NewStash(env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, env: env, kube: kube, stash: st, binDir: binDir, ns: "scale",
		path: binDir + string(os.PathListSeparator) + env.BinDir + string(os.PathListSeparator) + os.Getenv("PATH")}
	ctx := context.Background()
	if _, err := h.kubectl("stash", "install", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
	db := env.MariaDBs[0]
	if _, err := db.Exec(ctx, "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO shop.t VALUES (1, 'a'), (2, 'b');"); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	repoDir, repoPass := filepath.Join(t.TempDir(), "repo"), "scale repo pw"
	h.secret("repo-creds", map[string]string{"RESTIC_PASSWORD": repoPass})
	if _, err := h.kubectl("stash", "-n", h.ns, "create", "repository", "repo", "--backend", "local", "--path", repoDir, "--secret", "repo-creds"); err != nil {
		t.Fatal(err)
	}
	// Initialised once here: the slot measures backups, not 100 agents
	// queueing for the init Lease.
	h.restic(repoDir, repoPass, "init")

	// Every database its own AppBinding, Secret and config, a few at once.
	begin := time.Now()
	names := make([]string, set.agents)
	errs := make(chan error, set.agents)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range set.agents {
		names[i] = fmt.Sprintf("db-%03d", i)
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- h.database(name, db)
		}(names[i])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d AppBindings, Secrets and BackupConfigurations in %s", set.agents, time.Since(begin).Round(time.Second))

	// The API server alone: its own requests (its identity Lease, ...)
	// are subtracted from what the agents add.
	b0 := h.scrape(ctx)
	time.Sleep(set.baseline)
	b1 := h.scrape(ctx)

	var notReady []string // configs whose agent has not judged them
	agents := make([]*testenv.AgentProcess, set.agents)
	for i, name := range names {
		p, err := env.Control.StartAgent(ctx, testenv.AgentOptions{Namespace: h.ns, Deployment: contract.AgentName(name), BinDir: binDir, Path: h.path, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		agents[i] = p
		t.Cleanup(func() {
			p.Stop(20 * time.Second)
			if t.Failed() && (i < 2 || slices.ContainsFunc(notReady, func(s string) bool { return strings.HasPrefix(s, name+"-") })) {
				b, _ := os.ReadFile(p.LogPath)
				t.Logf("agent %s log:\n%s", name, b)
			}
		})
	}
	// Every agent leads and has judged its config.
	h.waitFor(3*time.Minute, "every config Ready", func() (bool, string) {
		list, err := st.BackupConfigurations(h.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready, waiting := 0, []string{}
		for _, bc := range list.Items {
			if bc.Status.Phase == stashv1beta1.BackupInvokerReady && bc.Status.ObservedGeneration == bc.Generation {
				ready++
			} else {
				waiting = append(waiting, fmt.Sprintf("%s (phase %q, generation %d observed %d)", bc.Name, bc.Status.Phase, bc.Generation, bc.Status.ObservedGeneration))
			}
		}
		notReady = waiting
		return ready == set.agents, fmt.Sprintf("%d of %d Ready; waiting: %s", ready, set.agents, strings.Join(waiting[:min(len(waiting), 5)], ", "))
	})
	// Startup (LISTs, the first Lease writes) is over well within a renewal.
	time.Sleep(agent.DefaultLeaseDuration / 2)

	s0 := h.scrape(ctx)
	time.Sleep(set.idle)
	s1 := h.scrape(ctx)
	var rss int64
	for _, p := range agents {
		if p.Exited() {
			t.Fatalf("agent %s exited while idle", p.LogPath)
		}
		rss += vmRSS(t, p.Pid())
	}
	idle := measureIdle(set.agents, b0, b1, s0, s1, rss)
	t.Log(idle.String())
	perMinReads := idle.reads / float64(set.agents) * 60
	perSecWrites := idle.writes / float64(set.agents)
	if perMinReads > maxReadsPerMinute {
		t.Errorf("an idle agent reads %.2f times a minute (GET and LIST), want at most %.0f:\n%s", perMinReads, maxReadsPerMinute, idle.breakdown())
	}
	if perSecWrites > maxWritesPerSec {
		t.Errorf("an idle agent writes %.3f times a second, want at most %.1f:\n%s", perSecWrites, maxWritesPerSec, idle.breakdown())
	}

	var slot *slotResult
	if set.slot {
		slot = h.runSlot(ctx, names, repoDir, repoPass)
		t.Log(slot.String())
	}
	if set.report != "" && !t.Failed() {
		if err := writeReport(set.report, set, idle, slot); err != nil {
			t.Fatal(err)
		}
	}
}

func (h *harness) secret(name string, data map[string]string) {
	h.t.Helper()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns}, StringData: data}
	if _, err := h.kube.CoreV1().Secrets(h.ns).Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
		h.t.Fatalf("create Secret %s: %v", name, err)
	}
}

// database creates one database's Secret, AppBinding and nightly config
// (which renders its agent); safe to call from several goroutines.
func (h *harness) database(name string, db *testenv.MariaDB) error {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-auth", Namespace: h.ns}, StringData: map[string]string{"username": db.User, "password": db.Password}}
	if _, err := h.kube.CoreV1().Secrets(h.ns).Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("Secret %s: %w", sec.Name, err)
	}
	if _, err := h.kubectl("stash", "-n", h.ns, "create", "appbinding", name, "--url", fmt.Sprintf("tcp(%s)/", db.Addr()), "--secret", sec.Name, "--type", "mariadb", "--version", "10.11"); err != nil {
		return err
	}
	_, err := h.kubectl("stash", "-n", h.ns, "create", "backupconfig", name+"-nightly", "--target", "appbinding/"+name, "--repository", "repo", "--schedule", "0 3 * * *", "--keep-last", "3")
	return err
}

func (h *harness) restic(repo, password string, args ...string) string {
	h.t.Helper()
	cmd := exec.Command(filepath.Join(h.env.BinDir, "restic"), append([]string{"-r", repo, "--no-cache"}, args...)...)
	cmd.Env = append(os.Environ(), "RESTIC_PASSWORD="+password)
	out, err := cmd.Output()
	if err != nil {
		h.t.Fatalf("restic %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// waitFor polls cond every second until it holds, or fails the test with
// its last word after timeout.
func (h *harness) waitFor(timeout time.Duration, what string, cond func() (bool, string)) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, word := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, word)
		}
		time.Sleep(time.Second)
	}
}

// vmRSS is a process's resident memory in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// slotResult is one schedule slot that every config is due in.
type slotResult struct {
	configs, succeeded, sessions, snapshots int
	twice                                   []string
	failures                                map[string]int // messages of the sessions that did not succeed
	slot                                    time.Time
	settle                                  time.Duration
	requests, writes                        float64 // per second over the slot
	peakCPU, meanCPU                        float64 // the API server's, in cores
	window                                  time.Duration
}

func (r *slotResult) String() string {
	return fmt.Sprintf("slot %s: %d configs, %d sessions, %d succeeded, %d snapshots, run twice: %v; settled %s after the slot; API server %.1f requests/s and %.1f writes/s over %s, CPU mean %.2f and peak %.2f cores; not succeeded: %v",
		r.slot.Format(time.TimeOnly), r.configs, r.sessions, r.succeeded, r.snapshots, r.twice, r.settle, r.requests, r.writes, r.window.Round(time.Second), r.meanCPU, r.peakCPU, r.failures)
}

// runSlot puts every config on the same hourly slot, the next minute at
// least 75 s away, and waits until every session it starts has ended.
func (h *harness) runSlot(ctx context.Context, names []string, repoDir, repoPass string) *slotResult {
	t := h.t
	now := time.Now()
	slot := now.Truncate(time.Minute).Add(time.Minute)
	for slot.Sub(now) < 75*time.Second {
		slot = slot.Add(time.Minute)
	}
	schedule := fmt.Sprintf("%d * * * *", slot.Minute())
	patch := []byte(fmt.Sprintf(`{"spec":{"schedule":%q}}`, schedule))
	for _, name := range names {
		if _, err := h.stash.BackupConfigurations(h.ns).Patch(ctx, name+"-nightly", types.MergePatchType, patch); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(slot.Add(-2 * time.Second)))
	first := h.scrape(ctx)
	r := &slotResult{configs: len(names), slot: slot, failures: map[string]int{}}
	prev := first
	done := false
	deadline := slot.Add(20 * time.Minute)
	for !done {
		time.Sleep(2 * time.Second)
		// The peak over windows of 10 s or more: a scrape the loaded API
		// server answers late would make a short window read high.
		if cur := h.scrape(ctx); cur.at.Sub(prev.at) >= 10*time.Second {
			if c := (cur.cpu - prev.cpu) / cur.at.Sub(prev.at).Seconds(); c > r.peakCPU {
				r.peakCPU = c
			}
			prev = cur
		}
		list, err := h.stash.BackupSessions(h.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		byConfig := map[string]int{}
		ended, last := 0, time.Time{}
		for _, bs := range list.Items {
			if bs.CreationTimestamp.Time.Before(slot.Add(-time.Minute)) {
				continue
			}
			byConfig[bs.Spec.Invoker.Name]++
			switch bs.Status.Phase {
			case stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed, stashv1beta1.BackupSessionSkipped:
				ended++
				if bs.Status.CompletionTime != nil && bs.Status.CompletionTime.After(last) {
					last = bs.Status.CompletionTime.Time
				}
			}
		}
		if len(byConfig) == len(names) && ended == len(list.Items) || time.Now().After(deadline) {
			done = true
			r.sessions, r.twice = 0, nil
			for _, bs := range list.Items {
				if bs.CreationTimestamp.Time.Before(slot.Add(-time.Minute)) {
					continue
				}
				r.sessions++
				if bs.Status.Phase == stashv1beta1.BackupSessionSucceeded {
					r.succeeded++
				} else {
					r.failures[string(bs.Status.Phase)+": "+bs.Status.Message]++
				}
			}
			for cfg, n := range byConfig {
				if n > 1 {
					r.twice = append(r.twice, cfg)
				}
			}
			sort.Strings(r.twice)
			r.settle = last.Sub(slot)
		}
	}
	end := h.scrape(ctx)
	r.window = end.at.Sub(first.at)
	d := diff(first, end)
	for k, v := range d.requests {
		r.requests += v
		if isWrite(k) {
			r.writes += v
		}
	}
	r.requests /= r.window.Seconds()
	r.writes /= r.window.Seconds()
	r.meanCPU = d.cpu / r.window.Seconds()
	var snaps []json.RawMessage
	if err := json.Unmarshal([]byte(h.restic(repoDir, repoPass, "snapshots", "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	r.snapshots = len(snaps)
	if r.sessions != len(names) || r.succeeded != len(names) || len(r.twice) > 0 || r.snapshots != len(names) {
		t.Errorf("the slot did not run every config once: %s", r)
	}
	return r
}
