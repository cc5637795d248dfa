package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// TestAgentKilledMidRestore: SIGKILL the agent (and the clients it runs,
// as a container kill would) while a restore has applied one table and
// waits on the next. A new agent settles the restore Failed within the
// bound backups have, naming the table it was loading, and never runs it
// again.
func TestAgentKilledMidRestore(t *testing.T) {
	f := newBackupFixture(t, "killrestore-e2e", s.env.MariaDBs[0])
	ns, ctx := f.ns, context.Background()
	f.localRepo(t, t.TempDir())
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "kr", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop"), "bc")
	first := startAgent(t, ns, "db")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "kr", "--wait", "--timeout", "3m"), "backup")

	// The dump holds shop.big, then shop.customers: with customers locked,
	// big is restored and customers waits.
	release := readTable(t, f.db, "shop.customers")
	r := kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/db")
	mustOK(t, r, "restore")
	name := createdName(lastLine(r.stdout))
	var last *stashv1beta1.RestoreSession
	if !poll(90*time.Second, func() bool {
		rs, err := f.st.RestoreSessions(ns).Get(ctx, name)
		last = rs
		return err == nil && rs.Status.Progress != nil && strings.Contains(rs.Status.Progress.Position, "`shop`.`customers`")
	}) {
		pl, _ := f.db.Exec(ctx, "SELECT id, state, LEFT(info, 100) FROM information_schema.processlist")
		t.Fatalf("the restore did not come to wait on shop.customers; status %+v; progress %+v\nprocesses:\n%s", last.Status, last.Status.Progress, pl)
	}
	killContainer(first)
	for range 10 {
		pid := findProcess("mariadb", first.Scratch)
		if pid == 0 {
			pid = findProcess("mysql", first.Scratch)
		}
		if pid == 0 {
			break
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(50 * time.Millisecond)
	}
	killedAt := time.Now()
	release()

	startAgent(t, ns, "db")
	var rs *stashv1beta1.RestoreSession
	eventually(t, 150*time.Second, "the orphaned restore to be marked Failed", func() bool {
		got, err := f.st.RestoreSessions(ns).Get(ctx, name)
		rs = got
		return err == nil && got.Status.Phase != stashv1beta1.RestoreRunning
	})
	took := time.Since(killedAt)
	t.Logf("orphaned restore settled %s after the kill: %s", took.Round(time.Second), rs.Status.Message)
	if rs.Status.Phase != stashv1beta1.RestoreFailed {
		t.Fatalf("phase %s, want Failed", rs.Status.Phase)
	}
	if took > 80*time.Second {
		t.Errorf("settling took %s, more than the 80s bound backups have", took)
	}
	for _, want := range []string{"partially restored", "`shop`.`customers`", "not retried", "into an empty database"} {
		if !strings.Contains(rs.Status.Message, want) {
			t.Errorf("message %q does not say %q", rs.Status.Message, want)
		}
	}
	if c := apimeta.FindStatusCondition(rs.Status.Conditions, stashv1beta1.ConditionRestoreCompleted); c == nil || c.Reason != "AgentStopped" {
		t.Errorf("RestoreCompleted condition: %+v", c)
	}
	// shop is partially restored, as the message says (whether the DROP
	// of customers ran depends on when the server saw its client go):
	// repair it for the tests after this one.
	if _, err := f.db.Exec(ctx, sampleSQL); err != nil {
		t.Fatal(err)
	}
	// Never run again: it stays Failed under the dead agent's claim.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "kr", "--wait", "--timeout", "3m"), "a later backup runs")
	again, err := f.st.RestoreSessions(ns).Get(ctx, name)
	if err != nil || again.Status.Phase != stashv1beta1.RestoreFailed || again.Status.ClaimedBy != rs.Status.ClaimedBy {
		t.Fatalf("the settled restore changed: %+v, %v", again.Status, err)
	}
}

// TestSessionWaitsForAccess: a RestoreSession applied as YAML from a
// Repository the agent's Role does not grant waits Pending with a
// condition naming the command, and runs once the command granted it,
// without being applied again.
func TestSessionWaitsForAccess(t *testing.T) {
	f := newBackupFixture(t, "access-e2e", s.env.MariaDBs[1])
	ns, ctx := f.ns, context.Background()
	f.localRepo(t, t.TempDir())
	createSecret(t, ns, "other-creds", map[string]string{"RESTIC_PASSWORD": "other-password"})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "other", "--backend", "local", "--path", t.TempDir(), "--secret", "other-creds"), "repo other")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "main", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases inventory"), "bc main")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "side", "--target", "appbinding/db", "--repository", "other",
		"--param", "args=--databases inventory"), "bc side")
	startAgent(t, ns, "db")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "side", "--wait", "--timeout", "3m"), "backup to other")
	// The config that used "other" goes, and the agent is rendered again:
	// its Role no longer grants other-creds.
	mustOK(t, kubectl(t, "", "-n", ns, "delete", "backupconfiguration", "side"), "delete side")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db"), "agent apply")
	role, err := kube(t).RbacV1().Roles(ns).Get(ctx, contract.AgentName("db"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmt.Sprint(role.Rules), "other-creds") {
		t.Fatalf("the Role still grants other-creds: %v", role.Rules)
	}

	const yaml = `apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata:
  name: from-other
spec:
  repository:
    name: other
  target:
    ref:
      apiVersion: appcatalog.appscode.com/v1alpha1
      kind: AppBinding
      name: db
    rules:
    - snapshots: [latest]
`
	mustOK(t, kubectl(t, yaml, "-n", ns, "apply", "-f", "-"), "apply RestoreSession")
	var cond *metav1.Condition
	eventually(t, 60*time.Second, "the RestoreSession to wait for access", func() bool {
		rs, err := f.st.RestoreSessions(ns).Get(ctx, "from-other")
		if err != nil {
			return false
		}
		if rs.Status.Phase != "" && rs.Status.Phase != stashv1beta1.RestorePending {
			t.Fatalf("the RestoreSession did not wait: %s: %s", rs.Status.Phase, rs.Status.Message)
		}
		cond = apimeta.FindStatusCondition(rs.Status.Conditions, stashv1beta1.ConditionAccessGranted)
		return cond != nil && cond.Status == metav1.ConditionFalse
	})
	fix := "kubectl stash agent apply --target appbinding/db -n " + ns + " --repository other"
	if !strings.Contains(cond.Message, fix) {
		t.Errorf("condition %q does not name the fix %q", cond.Message, fix)
	}
	assertNoSecrets(t, ns, "", "other-password")

	// The grant, as the condition says; the same RestoreSession runs.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db"), "agent apply again")
	rs := waitRestore(t, f.st, ns, "from-other")
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("after the grant: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if c := apimeta.FindStatusCondition(rs.Status.Conditions, stashv1beta1.ConditionAccessGranted); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("AccessGranted after the grant: %+v", c)
	}

	// The same for a BackupConfiguration applied as YAML after the agent:
	// its session waits, status says why and how, and it runs once granted.
	mustOK(t, kubectl(t, "", "-n", ns, "delete", "restoresession", "from-other"), "delete the finished restore")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db"), "agent apply without other")
	const bcYAML = `apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata:
  name: late
spec:
  repository:
    name: other
  target:
    ref:
      apiVersion: appcatalog.appscode.com/v1alpha1
      kind: AppBinding
      name: db
  task:
    params:
    - name: args
      value: --databases inventory
`
	mustOK(t, kubectl(t, bcYAML, "-n", ns, "apply", "-f", "-"), "apply BackupConfiguration")
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "late")
	mustOK(t, r, "trigger late")
	session := createdName(lastLine(r.stdout))
	eventually(t, 60*time.Second, "the BackupSession to wait for access", func() bool {
		bs, err := f.st.BackupSessions(ns).Get(ctx, session)
		if err != nil {
			return false
		}
		if bs.Status.Phase != "" && bs.Status.Phase != stashv1beta1.BackupSessionPending {
			t.Fatalf("the BackupSession did not wait: %s: %s", bs.Status.Phase, bs.Status.Message)
		}
		c := apimeta.FindStatusCondition(bs.Status.Conditions, stashv1beta1.ConditionAccessGranted)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, fix)
	})
	st := kubectl(t, "", "stash", "-n", ns, "status", "late")
	if !strings.Contains(st.stdout, "waits for access") || !strings.Contains(st.stdout, fix) {
		t.Errorf("status does not say the session waits for access, and how to grant it:\n%s", st.stdout)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db"), "agent apply grants other")
	waitPhase(t, f, session, 2*time.Minute, stashv1beta1.BackupSessionSucceeded)
}
