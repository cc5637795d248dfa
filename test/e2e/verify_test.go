package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// usersSQL adds accounts and grants, which a full backup carries in the
// mysql schema and a verification compares like any table.
const usersSQL = `CREATE USER 'reporter'@'%' IDENTIFIED BY 'reporter-pw';
GRANT SELECT ON fid_a.* TO 'reporter'@'%';
CREATE USER 'writer'@'10.0.0.%' IDENTIFIED BY 'writer-pw';
GRANT INSERT, UPDATE ON fid_b.legacy TO 'writer'@'10.0.0.%';`

// verifications lists a config's VerificationSessions, newest first.
func verifications(t *testing.T, st *client.Stash, ns, config string) []stashv1beta1.VerificationSession {
	t.Helper()
	list, err := st.VerificationSessions(ns).List(context.Background(), metav1.ListOptions{LabelSelector: stashv1beta1.LabelInvokerName + "=" + config})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[j].CreationTimestamp.Before(&list.Items[i].CreationTimestamp) ||
			list.Items[j].CreationTimestamp.Equal(&list.Items[i].CreationTimestamp) && list.Items[i].Name > list.Items[j].Name
	})
	return list.Items
}

func waitVerification(t *testing.T, st *client.Stash, ns, name string) *stashv1beta1.VerificationSession {
	t.Helper()
	var vs *stashv1beta1.VerificationSession
	eventually(t, 3*time.Minute, "verification "+name+" to end", func() bool {
		var err error
		vs, err = st.VerificationSessions(ns).Get(context.Background(), name)
		return err == nil && (vs.Status.Phase == stashv1beta1.VerificationSucceeded || vs.Status.Phase == stashv1beta1.VerificationFailed || vs.Status.Phase == stashv1beta1.VerificationInvalid)
	})
	return vs
}

// scratchLeftovers lists what verifications left in an agent's scratch
// directory, and the mariadbd processes still running from it.
func scratchLeftovers(t *testing.T, scratch string) []string {
	t.Helper()
	var left []string
	entries, _ := os.ReadDir(scratch)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), contract.VerifyDirPrefix) {
			left = append(left, filepath.Join(scratch, e.Name()))
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "mariadbd") && strings.Contains(string(b), scratch) {
			left = append(left, "process "+filepath.Base(filepath.Dir(p)))
		}
	}
	return left
}

// TestVerification: every second backup is verified on its own, and a
// verification asked for by hand; both restore the fidelity schema, users
// and grants into a scratch server and find it equal to the manifest, run
// beside a backup without blocking it, and leave nothing behind. An agent
// killed mid-verification leaves a settled session and, once an agent
// starts there again, no scratch server or data. Bytes overwritten inside
// a data pack (restic check still passes) fail the verification, naming
// the snapshot.
func TestVerification(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "verifysrc", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, fidelitySQL+usersSQL); err != nil {
		t.Fatal(err)
	}
	ns := "verify-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "v", "--target", "appbinding/src", "--repository", "repo",
		"--verify-every", "2", "--backup-history-limit", "3", "--pushgateway", s.env.Pushgateway.URL), "backupconfig --verify-every 2")
	agentDir := t.TempDir()
	agent, err := s.env.Control.StartAgent(ctx, testenv.AgentOptions{Namespace: ns, Deployment: contract.AgentName("src"), BinDir: s.binDir, Path: s.path, Dir: agentDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Stop(20 * time.Second) })

	// verify-every 2: the second backup is verified on its own.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "v", "--wait", "--timeout", "3m"), "backup 1")
	if vs := verifications(t, st, ns, "v"); len(vs) != 0 {
		t.Fatalf("a verification after the first backup of verify-every 2: %s", vs[0].Name)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "v", "--wait", "--timeout", "3m"), "backup 2")
	eventually(t, time.Minute, "the verification of the second backup", func() bool { return len(verifications(t, st, ns, "v")) == 1 })
	auto := waitVerification(t, st, ns, verifications(t, st, ns, "v")[0].Name)
	bc := pitrConfig(t, st, ns, "v")
	second := bc.Status.LastSuccessfulSession
	if auto.Status.Phase != stashv1beta1.VerificationSucceeded {
		t.Fatalf("verification %s: %s: %s", auto.Name, auto.Status.Phase, auto.Status.Message)
	}
	if auto.Status.TablesChecked < 10 || auto.Status.MismatchCount != 0 || auto.Status.RestoreDuration == "" || auto.Status.Snapshot == "" {
		t.Errorf("verification status: %+v", auto.Status)
	}
	if c := apimeta.FindStatusCondition(auto.Status.Conditions, stashv1beta1.ConditionVerified); c == nil || c.Status != "True" {
		t.Errorf("condition %s: %+v", stashv1beta1.ConditionVerified, c)
	}
	eventually(t, 30*time.Second, "the config's last verification", func() bool {
		v := pitrConfig(t, st, ns, "v").Status.Verification
		return v != nil && v.LastVerifiedSnapshot == auto.Status.Snapshot && v.LastVerifiedTime != nil && v.LastRestoreDuration != ""
	})
	t.Logf("verified %s (backup %s): %s", auto.Status.Snapshot, second, auto.Status.Message)

	// By hand, beside a backup: neither waits for the other.
	r := kubectl(t, "", "stash", "-n", ns, "verify", "v")
	mustOK(t, r, "verify")
	manual := createdName(lastLine(r.stdout))
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "v", "--wait", "--timeout", "3m"), "backup beside a verification")
	vs := waitVerification(t, st, ns, manual)
	if vs.Status.Phase != stashv1beta1.VerificationSucceeded {
		t.Fatalf("verification beside a backup: %s: %s", vs.Status.Phase, vs.Status.Message)
	}
	var backupStart, backupEnd time.Time
	bsl, err := st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bsl.Items {
		if b.Status.StartTime != nil && b.Status.CompletionTime != nil && b.Status.StartTime.After(backupStart) {
			backupStart, backupEnd = b.Status.StartTime.Time, b.Status.CompletionTime.Time
		}
	}
	if vs.Status.StartTime.After(backupEnd) || vs.Status.CompletionTime.Before(&metav1.Time{Time: backupStart}) {
		t.Errorf("the verification (%s..%s) and the backup (%s..%s) did not overlap", vs.Status.StartTime, vs.Status.CompletionTime, backupStart, backupEnd)
	}
	r = kubectl(t, "", "stash", "-n", ns, "verify", "v", "--wait", "--timeout", "3m")
	mustOK(t, r, "verify --wait")
	if !strings.Contains(r.stdout, "Succeeded") || !strings.Contains(r.stdout, "tables equal what was backed up") {
		t.Errorf("verify --wait:\n%s", r.stdout)
	}
	r = kubectl(t, "", "get", "verificationsessions", "-n", ns)
	mustOK(t, r, "get verificationsessions")
	if !strings.Contains(r.stdout, "RTO") || !strings.Contains(r.stdout, "Succeeded") {
		t.Errorf("printer columns:\n%s", r.stdout)
	}
	evs, err := kube(t).CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=VerificationSucceeded"})
	if err != nil || len(evs.Items) == 0 {
		t.Errorf("no VerificationSucceeded Event: %v", err)
	}
	eventually(t, 30*time.Second, "stash_verification_success 1 in the agent's metrics", func() bool {
		return strings.HasSuffix(agentMetric(agent.Listen, "stash_verification_success", "v"), " 1")
	})
	if left := scratchLeftovers(t, agent.Scratch); len(left) > 0 {
		t.Errorf("verifications left behind: %v", left)
	}
	// A verification read the snapshot back whole: the Repository's
	// INTEGRITY says so.
	if repo, err := st.Repositories(ns).Get(ctx, "repo"); err != nil || repo.Status.Integrity == nil || !*repo.Status.Integrity {
		t.Errorf("Repository integrity after a verification that succeeded: %v (%v), want true", repo.Status.Integrity, err)
	}
	queriesHaveData(t, "stash_verification_", "stash_repository_integrity")

	// The agent killed mid-verification: settled as an orphan, and the
	// next agent in the same place removes what the scratch server left.
	r = kubectl(t, "", "stash", "-n", ns, "verify", "v")
	mustOK(t, r, "verify")
	killed := createdName(lastLine(r.stdout))
	eventually(t, time.Minute, "the verification to run", func() bool {
		vs, err := st.VerificationSessions(ns).Get(ctx, killed)
		return err == nil && vs.Status.Phase == stashv1beta1.VerificationRunning
	})
	agent.Kill()
	scratch := agent.Scratch
	agent, err = s.env.Control.StartAgent(ctx, testenv.AgentOptions{Namespace: ns, Deployment: contract.AgentName("src"), BinDir: s.binDir, Path: s.path, Dir: agentDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Stop(20 * time.Second) })
	vs = waitVerification(t, st, ns, killed)
	if vs.Status.Phase != stashv1beta1.VerificationFailed || !strings.Contains(vs.Status.Message, "stopped before it finished") {
		t.Errorf("a verification whose agent was killed: %s: %s", vs.Status.Phase, vs.Status.Message)
	}
	eventually(t, 30*time.Second, "no scratch server or data left", func() bool { return len(scratchLeftovers(t, scratch)) == 0 })

	// Bytes overwritten inside every data blob: restic check (no
	// --read-data) passes, the verification does not. Every blob, so no
	// snapshot can be restored whichever chunks it shares with others.
	repoDir := localRepoPath(t, ns)
	// The killed agent's restic may hold its (read) lock a moment longer;
	// once it is gone, restic removes the stale lock.
	restic := func(args ...string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "bin", "restic"), append([]string{"-r", repoDir, "--no-cache"}, args...)...)
		cmd.Env = append(os.Environ(), "RESTIC_PASSWORD="+ns+"-password")
		return cmd.CombinedOutput()
	}
	if n := damageDataBlobs(t, repoDir, restic); n == 0 {
		t.Fatalf("no data blobs found in %s", repoDir)
	}
	var checkOut []byte
	if !poll(time.Minute, func() bool {
		_, _ = restic("unlock")
		checkOut, err = restic("check")
		return err == nil
	}) {
		t.Fatalf("restic check without --read-data should pass on a damaged data pack: %v\n%s", err, checkOut)
	}
	r = kubectl(t, "", "stash", "-n", ns, "verify", "v", "--wait", "--timeout", "3m")
	if r.code == 0 || !strings.Contains(r.stderr, "could not be read back") || !strings.Contains(r.stderr, "lost data") {
		t.Errorf("verify of a damaged repository: exit %d:\n%s", r.code, r.stderr)
	}
	if vs := verifications(t, st, ns, "v"); len(vs) > 0 {
		t.Logf("damaged: %s", vs[0].Status.Message)
	}

	if repo, err := st.Repositories(ns).Get(ctx, "repo"); err != nil || repo.Status.Integrity == nil || *repo.Status.Integrity {
		t.Errorf("Repository integrity after a verification found lost data: %v (%v), want false", repo.Status.Integrity, err)
	}
	// status names the damaged repository and what to do.
	r = kubectl(t, "", "stash", "-n", ns, "status")
	if !strings.Contains(r.stdout, "Repository repo failed its last integrity check") || !strings.Contains(r.stdout, "failing") {
		t.Errorf("status after the repository was found damaged does not say so:\n%s", r.stdout)
	}
}

// damageDataBlobs overwrites bytes in the middle of every data blob of the
// repository at dir, found through its index, and returns how many.
func damageDataBlobs(t *testing.T, dir string, restic func(...string) ([]byte, error)) int {
	t.Helper()
	var ids []byte
	if !poll(time.Minute, func() bool {
		_, _ = restic("unlock")
		var err error
		ids, err = restic("list", "index")
		return err == nil
	}) {
		t.Fatalf("restic list index: %s", ids)
	}
	n := 0
	for _, id := range strings.Fields(string(ids)) {
		out, err := restic("cat", "index", id)
		if err != nil {
			t.Fatalf("restic cat index %s: %v\n%s", id, err, out)
		}
		var idx struct {
			Packs []struct {
				ID    string `json:"id"`
				Blobs []struct {
					Type   string `json:"type"`
					Offset int64  `json:"offset"`
					Length int64  `json:"length"`
				} `json:"blobs"`
			} `json:"packs"`
		}
		if err := json.Unmarshal(out, &idx); err != nil {
			t.Fatalf("index %s: %v", id, err)
		}
		for _, p := range idx.Packs {
			path := filepath.Join(dir, "data", p.ID[:2], p.ID)
			for _, b := range p.Blobs {
				if b.Type != "data" {
					continue
				}
				_ = os.Chmod(path, 0o600)
				f, err := os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.WriteAt([]byte("overwritten by the test"), b.Offset+b.Length/2)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
		}
	}
	return n
}

// TestVerificationMismatch: a scratch server whose settings change stored
// values (a stored generated column computed with another division
// precision) restores data that differs from what was backed up; the
// verification fails and names the table.
func TestVerificationMismatch(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "verifymm", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, `CREATE DATABASE shop; CREATE TABLE shop.ratios (id INT PRIMARY KEY, a INT, b INT, r DECIMAL(20,10) AS (a / b) STORED);
INSERT INTO shop.ratios (id, a, b) VALUES (1, 1, 3), (2, 2, 7); CREATE TABLE shop.plain (id INT PRIMARY KEY); INSERT INTO shop.plain VALUES (1);`); err != nil {
		t.Fatal(err)
	}
	ns := "verify-mismatch-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "m", "--target", "appbinding/src", "--repository", "repo",
		"--verify-server-arg=--div-precision-increment=0"), "backupconfig")
	startAgent(t, ns, "src")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "m", "--wait", "--timeout", "3m"), "backup")
	r := kubectl(t, "", "stash", "-n", ns, "verify", "m", "--wait", "--timeout", "3m")
	if r.code == 0 || !strings.Contains(r.stderr, "shop.ratios") {
		t.Fatalf("a verification whose restore differs: exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	vs := verifications(t, st, ns, "m")[0]
	if vs.Status.Phase != stashv1beta1.VerificationFailed || vs.Status.MismatchCount == 0 || !strings.Contains(strings.Join(vs.Status.Mismatches, ";"), "shop.ratios") ||
		strings.Contains(strings.Join(vs.Status.Mismatches, ";"), "shop.plain") {
		t.Errorf("mismatch status: %+v", vs.Status)
	}
	if c := apimeta.FindStatusCondition(vs.Status.Conditions, stashv1beta1.ConditionVerified); c == nil || c.Reason != "Mismatch" {
		t.Errorf("condition %s: %+v", stashv1beta1.ConditionVerified, c)
	}
}

// TestVerificationIntoNamedTarget: a verification into an AppBinding kept
// for it runs on that AppBinding's agent, empties it first (a database
// left there from before is gone), restores the fidelity schema into it
// and finds it equal to what was backed up, and leaves the target's own
// accounts in place, so a second verification into it succeeds too. The
// config's own database, or another backed-up one, is refused as a target.
func TestVerificationIntoNamedTarget(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "vnamedsrc", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := s.env.AddMariaDB(ctx, "vnamedtgt", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, fidelitySQL+usersSQL); err != nil {
		t.Fatal(err)
	}
	if _, err := tgt.Exec(ctx, "CREATE DATABASE stale; CREATE TABLE stale.leftover (id INT PRIMARY KEY); CREATE USER 'tgtonly'@'%' IDENTIFIED BY 'tgt-pw';"); err != nil {
		t.Fatal(err)
	}
	ns := "verify-named-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	addAppBinding(t, ns, "tgt", tgt)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "n", "--target", "appbinding/src", "--repository", "repo"), "backupconfig")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/tgt", "--repository", "repo"), "agent apply for the target")
	startAgent(t, ns, "src")
	startAgent(t, ns, "tgt")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "n", "--wait", "--timeout", "3m"), "backup")

	// Into the source itself: refused before anything is created.
	r := kubectl(t, "", "stash", "-n", ns, "verify", "n", "--target", "appbinding/src")
	if r.code == 0 || !strings.Contains(r.stderr, "backs up") {
		t.Errorf("verify into the config's own database: exit %d:\n%s", r.code, r.stderr)
	}

	for round := 1; round <= 2; round++ {
		r = kubectl(t, "", "stash", "-n", ns, "verify", "n", "--target", "appbinding/tgt", "--wait", "--timeout", "3m")
		mustOK(t, r, "verify --target")
		vs := verifications(t, st, ns, "n")[0]
		if vs.Status.Phase != stashv1beta1.VerificationSucceeded || vs.Status.TablesChecked < 10 || !strings.HasPrefix(vs.Status.ClaimedBy, contract.AgentName("tgt")) {
			t.Fatalf("round %d: verification into the named target: %s by %s: %s", round, vs.Status.Phase, vs.Status.ClaimedBy, vs.Status.Message)
		}
		if out, err := tgt.Exec(ctx, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'stale'"); err != nil || strings.TrimSpace(out) != "0" {
			t.Errorf("round %d: the target's old database is still there (%q, %v)", round, out, err)
		}
		if out, err := tgt.Exec(ctx, "SELECT COUNT(*) FROM fid_a.child"); err != nil || strings.TrimSpace(out) == "0" {
			t.Errorf("round %d: the snapshot's data is not in the target (%q, %v)", round, out, err)
		}
		// Its own accounts stay: the source's are not loaded, its own work.
		if out, err := tgt.Exec(ctx, "SELECT GROUP_CONCAT(user ORDER BY user) FROM mysql.global_priv WHERE user IN ('reporter', 'tgtonly')"); err != nil || strings.TrimSpace(out) != "tgtonly" {
			t.Errorf("round %d: the target's accounts: %q (%v), want its own tgtonly and not the source's reporter", round, out, err)
		}
	}
	if out, err := src.Exec(ctx, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'fid_a'"); err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("the source changed: %q, %v", out, err)
	}

	// A backed-up database as a target: refused by its agent, as Invalid.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "tgtbackup", "--target", "appbinding/tgt", "--repository", "repo", "--paused"), "a config backing up the target")
	r = kubectl(t, "", "stash", "-n", ns, "verify", "n", "--target", "appbinding/tgt", "--wait", "--timeout", "2m")
	if r.code == 0 || !strings.Contains(r.stderr, "is backed up by BackupConfiguration tgtbackup") {
		t.Errorf("verify into a backed-up database: exit %d:\n%s", r.code, r.stderr)
	}
}

// localRepoPath is where the namespace's Repository "repo" keeps its data.
func localRepoPath(t *testing.T, ns string) string {
	t.Helper()
	st, err := client.NewStash(s.env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := st.Repositories(ns).Get(context.Background(), "repo")
	if err != nil || repo.Spec.Backend.Local == nil {
		t.Fatalf("Repository repo in %s: %v", ns, err)
	}
	return filepath.Join(repo.Spec.Backend.Local.MountPath, repo.Spec.Backend.Local.SubPath)
}
