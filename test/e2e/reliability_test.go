package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// TestTriggerStorm: 20 sessions within a second; one runs, the others are
// Skipped with a reason, and nothing deadlocks.
func TestTriggerStorm(t *testing.T) {
	f := newBackupFixture(t, "storm-e2e", s.env.MariaDBs[1])
	ns := f.ns
	ctx := context.Background()
	f.localRepo(t, t.TempDir())
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "storm", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop", "--backup-history-limit", "30"), "bc")
	startAgent(t, ns, "db")
	bc, err := f.st.BackupConfigurations(ns).Get(ctx, "storm")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			bs := session.NewBackup(bc, fmt.Sprintf("storm-%02d", i))
			_, err := f.st.BackupSessions(ns).Create(ctx, bs, metav1.CreateOptions{})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("creating 20 sessions took %s", d)
	}
	var succeeded, skipped int
	eventually(t, 2*time.Minute, "every session to end", func() bool {
		l, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		succeeded, skipped = 0, 0
		for _, bs := range l.Items {
			switch bs.Status.Phase {
			case stashv1beta1.BackupSessionSucceeded:
				succeeded++
			case stashv1beta1.BackupSessionSkipped:
				skipped++
				if !strings.Contains(bs.Status.Message, "still running") {
					t.Errorf("skipped session %s has no reason: %q", bs.Name, bs.Status.Message)
				}
			}
		}
		return succeeded+skipped == 20
	})
	if succeeded != 1 || skipped != 19 {
		t.Fatalf("storm: %d succeeded, %d skipped; want 1 and 19", succeeded, skipped)
	}
}

// TestAgentKilledMidBackup: SIGKILL the agent (and its children, as a
// container kill would) during a dump, restart it, and expect the orphaned
// session Failed within the lease bound, a retry that succeeds, no partial
// snapshot, and a repository that checks clean.
func TestAgentKilledMidBackup(t *testing.T) {
	f := newBackupFixture(t, "kill-e2e", s.env.MariaDBs[0])
	ns := f.ns
	ctx := context.Background()
	dir := t.TempDir()
	f.localRepo(t, dir)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "killme", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop", "--max-retry", "1", "--retry-delay", "1s", "--backup-history-limit", "5"), "bc")
	first := startAgent(t, ns, "db")

	release := stallDump(t, f.db)
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "killme")
	mustOK(t, r, "trigger")
	name := createdName(r.stdout)
	waitDumping(t, first)
	resticPid := findProcess("restic", first.Scratch)
	killContainer(first)
	_ = syscall.Kill(-resticPid, syscall.SIGKILL)
	killedAt := time.Now()
	release()

	startAgent(t, ns, "db")
	var failedAfter time.Duration
	eventually(t, 150*time.Second, "the orphaned session to be marked Failed", func() bool {
		bs, err := f.st.BackupSessions(ns).Get(ctx, name)
		if err == nil && bs.Status.Phase == stashv1beta1.BackupSessionFailed {
			failedAfter = time.Since(killedAt)
			return true
		}
		return false
	})
	t.Logf("orphaned session marked Failed %s after the kill", failedAfter.Round(time.Second))
	// Bound: the leader Lease runs out (45s after the last renewal, which
	// came before the kill), then the new leader waits one session lease
	// (15s) for a heartbeat, then two restic runs (unlock, the snapshot
	// lookup) and a status write (decision 60).
	if failedAfter > 80*time.Second {
		t.Errorf("orphan detection took %s, more than the stated bound of 80s", failedAfter)
	}
	bs, _ := f.st.BackupSessions(ns).Get(ctx, name)
	if !strings.Contains(bs.Status.Message, "stopped before it finished") {
		t.Errorf("orphan message: %q", bs.Status.Message)
	}
	eventually(t, 2*time.Minute, "the retry to succeed", func() bool {
		rb, err := f.st.BackupSessions(ns).Get(ctx, name+"-retry-1")
		return err == nil && rb.Status.Phase == stashv1beta1.BackupSessionSucceeded
	})
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 1 {
		t.Fatalf("%d snapshots after a killed and a retried backup; want exactly the retry's", n)
	}
	resticCheck(t, dir, f.repoPass)
}

// TestTwoReplicas: two agents for one database share a Lease. Over 20 slots
// there is exactly one session per slot, no session runs twice, and when the
// leader is killed the other takes over within the Lease duration.
func TestTwoReplicas(t *testing.T) {
	f := newBackupFixture(t, "replicas-e2e", s.env.MariaDBs[1])
	ns := f.ns
	ctx := context.Background()
	dir := t.TempDir()
	f.localRepo(t, dir)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "often", "--target", "appbinding/db", "--repository", "repo",
		"--schedule", "@every 3s", "--param", "args=--databases inventory", "--backup-history-limit", "100", "--replicas", "2"), "bc")
	a := startAgent(t, ns, "db")
	b := startAgent(t, ns, "db")

	leaderOf := func() *testenv.AgentProcess {
		for _, p := range []*testenv.AgentProcess{a, b} {
			if !p.Exited() && logHas(p.LogPath, `"msg":"leading"`) {
				return p
			}
		}
		return nil
	}
	var leader *testenv.AgentProcess
	eventually(t, 30*time.Second, "a leader", func() bool { leader = leaderOf(); return leader != nil })

	sessions := func() map[string]stashv1beta1.BackupSessionPhase {
		l, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]stashv1beta1.BackupSessionPhase{}
		for _, bs := range l.Items {
			out[bs.Name] = bs.Status.Phase
		}
		return out
	}
	// Let about ten slots pass, then kill the leader and let ten more pass.
	eventually(t, 90*time.Second, "ten slots", func() bool { return len(sessions()) >= 10 })
	other := a
	if leader == a {
		other = b
	}
	killContainer(leader)
	killedAt := time.Now()
	lease, err := kube(t).CoordinationV1().Leases(ns).Get(ctx, "stash-agent-db", metav1.GetOptions{})
	if err != nil || lease.Spec.RenewTime == nil {
		t.Fatalf("the leader's Lease: %v", err)
	}
	renewed := lease.Spec.RenewTime.Time
	eventually(t, 90*time.Second, "the other replica to lead", func() bool { return logHas(other.LogPath, `"msg":"leading"`) })
	led := logTime(t, other.LogPath, `"msg":"leading"`)
	takeover := led.Sub(renewed)
	t.Logf("takeover %s after the leader's last renewal (%s after the kill)", takeover.Round(100*time.Millisecond), led.Sub(killedAt).Round(100*time.Millisecond))
	// Bound: the Lease duration (45s) after the last renewal, plus up to
	// two jittered retry periods (2.4s each: the follower sees the renewal
	// at its next read and takes over at the read after the duration),
	// plus the API round trips of a loaded machine.
	if takeover > 55*time.Second {
		t.Errorf("takeover took %s after the last renewal, more than the 55s bound", takeover)
	}
	eventually(t, 90*time.Second, "twenty slots", func() bool { return len(sessions()) >= 20 })
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "pause", "backupconfig", "often"), "pause")
	var all map[string]stashv1beta1.BackupSessionPhase
	eventually(t, 2*time.Minute, "every session to end", func() bool {
		all = sessions()
		for _, p := range all {
			if p == "" || p == stashv1beta1.BackupSessionPending || p == stashv1beta1.BackupSessionRunning {
				return false
			}
		}
		return true
	})
	slots := map[string]int{}
	succeeded := 0
	for name, p := range all {
		base := strings.TrimSuffix(name, "-retry-1")
		slots[base]++
		if p == stashv1beta1.BackupSessionSucceeded {
			succeeded++
		}
	}
	for slot, n := range slots {
		if n > 1 {
			t.Errorf("slot %s has %d sessions", slot, n)
		}
	}
	// Each Succeeded session made exactly one snapshot: none ran twice.
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != succeeded {
		t.Errorf("%d snapshots for %d succeeded sessions", n, succeeded)
	}
}

// logTime is the time of the first agent log line containing needle.
func logTime(t *testing.T, path, needle string) time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, needle) {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("agent log line %q: %v", line, err)
		}
		return rec.Time
	}
	t.Fatalf("no line with %s in %s", needle, path)
	return time.Time{}
}

func logHas(path, needle string) bool { return logCount(path, needle) > 0 }

// TestSessionsWaitForAnOrphansVerdict: after a crash mid-backup on a
// schedule, the restarted agent's catch-up and scheduled sessions find the
// dead agent's session still Running until its heartbeat has been silent
// for a lease. They wait for that verdict instead of being Skipped behind
// it, and a backup runs once it is settled.
func TestSessionsWaitForAnOrphansVerdict(t *testing.T) {
	f := newBackupFixture(t, "verdict-e2e", s.env.MariaDBs[0])
	ns := f.ns
	ctx := context.Background()
	f.localRepo(t, t.TempDir())
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "crashy", "--target", "appbinding/db", "--repository", "repo",
		"--schedule", "@every 5s", "--param", "args=--databases shop", "--backup-history-limit", "50"), "bc")
	first := startAgent(t, ns, "db")
	release := stallDump(t, f.db)
	waitDumping(t, first)
	var orphan string
	l, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, bs := range l.Items {
		if bs.Status.Phase == stashv1beta1.BackupSessionRunning {
			orphan = bs.Name
		}
	}
	if orphan == "" {
		t.Fatal("no Running session while the dump is stalled")
	}
	killContainer(first)
	release()
	time.Sleep(6 * time.Second) // a slot passes with no agent
	restarted := time.Now()
	startAgent(t, ns, "db")
	waitPhase(t, f, orphan, 150*time.Second, stashv1beta1.BackupSessionFailed)
	var ran string
	eventually(t, 2*time.Minute, "a backup after the orphan was settled", func() bool {
		l, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, bs := range l.Items {
			if bs.Name != orphan && bs.CreationTimestamp.After(restarted.Add(-time.Second)) && bs.Status.Phase == stashv1beta1.BackupSessionSucceeded {
				ran = bs.Name
				return true
			}
		}
		return false
	})
	t.Logf("%s ran after %s was settled", ran, orphan)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "pause", "backupconfig", "crashy"), "pause")
	l, err = f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, bs := range l.Items {
		// Skips by the first agent, while the orphan really ran, are right.
		if bs.CreationTimestamp.After(restarted.Add(-time.Second)) && bs.Status.Phase == stashv1beta1.BackupSessionSkipped && strings.Contains(bs.Status.Message, orphan) {
			t.Errorf("session %s was Skipped behind the orphan: %s", bs.Name, bs.Status.Message)
		}
	}
}

// TestAgentKilledAfterSnapshot: an agent killed after restic saved the
// snapshot but before it wrote the session's status. The next agent finds
// the snapshot by the session's tag: the session Succeeded, with no retry
// and no second snapshot.
func TestAgentKilledAfterSnapshot(t *testing.T) {
	f := newBackupFixture(t, "killsaved-e2e", s.env.MariaDBs[1])
	ns := f.ns
	ctx := context.Background()
	dir := t.TempDir()
	f.localRepo(t, dir)
	// With one snapshot there and --keep-last 1, the session's retention
	// forgets one and prunes after its snapshot is saved: the window the
	// kill lands in.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "saved", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases inventory", "--keep-last", "1", "--prune", "--max-retry", "1", "--retry-delay", "1s", "--backup-history-limit", "5"), "bc")
	first := startAgent(t, ns, "db")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "saved", "--wait", "--timeout", "3m"), "first backup")
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "saved")
	mustOK(t, r, "trigger")
	name := createdName(r.stdout)
	deadline := time.Now().Add(2 * time.Minute)
	for logCount(first.LogPath, `"msg":"snapshot saved"`) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the snapshot to be saved")
		}
		time.Sleep(10 * time.Millisecond)
	}
	killContainer(first)
	bs, err := f.st.BackupSessions(ns).Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if bs.Status.Phase != stashv1beta1.BackupSessionRunning {
		t.Fatalf("session %s is %s after the kill; the kill came too late to test this", name, bs.Status.Phase)
	}

	startAgent(t, ns, "db")
	bs = waitPhase(t, f, name, 2*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded || !strings.Contains(bs.Status.Message, "stopped before recording it") {
		t.Fatalf("session %s is %s: %q", name, bs.Status.Phase, bs.Status.Message)
	}
	var snap string
	if st := bs.Status.Targets; len(st) == 1 && len(st[0].Stats) == 1 && len(st[0].Stats[0].Snapshots) == 1 {
		snap = st[0].Stats[0].Snapshots[0].Name
	}
	if ids, err := listSnapshots(t, dir, f.repoPass, nil, "--tag", "session="+name); err != nil || len(ids) != 1 || ids[0] != snap {
		t.Errorf("status names snapshot %q; the repository has %v for the session (err %v)", snap, ids, err)
	}
	bc, err := f.st.BackupConfigurations(ns).Get(ctx, "saved")
	if err != nil || bc.Status.LastSuccessfulSession != name {
		t.Errorf("config's last successful session = %q (err %v), want %s", bc.Status.LastSuccessfulSession, err, name)
	}
	f.runOneMore(t, "saved")
	if _, err := f.st.BackupSessions(ns).Get(ctx, name+"-retry-1"); err == nil {
		t.Errorf("a session that saved its snapshot was retried")
	}
	resticCheck(t, dir, f.repoPass)
}

// TestSettledSessionIsNotOverwritten: an agent that lost the Lease in an
// API outage can still be running a session when the new leader settles it
// as orphaned. Whichever writes first wins: the running agent then neither
// overwrites the outcome nor queues a retry.
func TestSettledSessionIsNotOverwritten(t *testing.T) {
	f := newBackupFixture(t, "settled-e2e", s.env.MariaDBs[0])
	ns := f.ns
	ctx := context.Background()
	f.localRepo(t, t.TempDir())
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "settled", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop", "--max-retry", "1", "--retry-delay", "1s"), "bc")
	agent := startAgent(t, ns, "db")
	release := stallDump(t, f.db)
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "settled")
	mustOK(t, r, "trigger")
	name := createdName(r.stdout)
	waitDumping(t, agent)
	// What a new leader's recovery writes for an orphan (retried: the
	// agent's heartbeat writes the status too).
	const verdict = "settled by the other replica"
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		bs, err := f.st.BackupSessions(ns).Get(ctx, name)
		if err != nil {
			return err
		}
		bs.Status.Phase = stashv1beta1.BackupSessionFailed
		bs.Status.Message = verdict
		bs.Status.ClaimedBy = "other-replica"
		_, err = f.st.BackupSessions(ns).UpdateStatus(ctx, bs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	release()
	eventually(t, time.Minute, "the agent to finish its backup", func() bool {
		return logHas(agent.LogPath, "another agent settled this session first") || logHas(agent.LogPath, `"msg":"backup succeeded"`) || logHas(agent.LogPath, `"msg":"backup failed"`)
	})
	bs, err := f.st.BackupSessions(ns).Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if bs.Status.Phase != stashv1beta1.BackupSessionFailed || bs.Status.Message != verdict {
		t.Errorf("the settled session was overwritten: %s %q", bs.Status.Phase, bs.Status.Message)
	}
	f.runOneMore(t, "settled")
	if _, err := f.st.BackupSessions(ns).Get(ctx, name+"-retry-1"); err == nil {
		t.Errorf("the agent queued a retry for a session another agent settled")
	}
}

// runOneMore runs one more session of config to its end. A retry is created
// when a session is settled, so once the agent has run another session
// after that, a retry that is not there was not made: an event to wait on,
// where a sleep would pass whenever the agent is merely slow.
func (f *backupFixture) runOneMore(t *testing.T, config string) {
	t.Helper()
	r := kubectl(t, "", "stash", "-n", f.ns, "trigger", config)
	mustOK(t, r, "trigger "+config)
	waitPhase(t, f, createdName(r.stdout), 2*time.Minute, stashv1beta1.BackupSessionSucceeded)
}

// logCount is how many agent log lines contain needle.
func logCount(path, needle string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), needle)
}

// killContainer SIGKILLs an agent and everything it started, as killing its
// container would: restic runs in its own process group, so it is found by
// the agent's scratch directory in its argv.
func killContainer(p *testenv.AgentProcess) {
	p.Kill()
	for i := 0; i < 10; i++ {
		pid := findProcess("restic", p.Scratch)
		if pid == 0 {
			return
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(50 * time.Millisecond)
	}
}
