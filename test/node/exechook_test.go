package node

import (
	"context"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// TestExecHookFromAgentPod: a user opts in to exec hooks with
// --hook-exec-pod; the agent, as a Pod with the rendered Role, runs the
// BackupConfiguration's preBackup exec hook in the database's Pod before
// the dump. The hook's effect is in the database, its outcome in the
// session's conditions.
func TestExecHookFromAgentPod(t *testing.T) {
	f := newAgentFixture(t, "exec-hook", "--hook-exec-pod", "mariadb", "--param", "args=--databases shop")
	patch := `{"spec":{"hooks":{"preBackup":{"containerName":"mariadb","exec":{"command":["sh","-c",` +
		`"MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" exec mariadb -uroot -e 'CREATE TABLE IF NOT EXISTS shop.hook_ran (at DATETIME); INSERT INTO shop.hook_ran VALUES (NOW())'"]}}}}}`
	mustOK(t, kubectl(t, "", "-n", f.ns, "patch", "backupconfiguration", "bc", "--type", "merge", "-p", patch), "add the hook")
	agentPod(t, f.ns, "mysql", 3*time.Minute)
	name := f.trigger(t)
	bs := f.waitPhase(t, name, 3*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	c := apimeta.FindStatusCondition(bs.Status.Conditions, stashv1beta1.ConditionPreBackupHookExecutionSucceeded)
	if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded || c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("session %s: %s (%s); hook condition %+v", name, bs.Status.Phase, bs.Status.Message, c)
	}
	if got := f.db.sql(t, "SELECT COUNT(*) FROM shop.hook_ran"); strings.TrimSpace(got) != "1" {
		t.Errorf("the hook's row count in the database: %q, want 1", got)
	}
	// The hook ran before the dump: the snapshot holds the table it made.
	if dump := restic(t, f.env, "-r", f.url, "dump", "latest", contract.DumpFile("mysql")); !strings.Contains(dump, "hook_ran") {
		t.Error("the snapshot has no shop.hook_ran: the hook did not run before the dump")
	}
	role, err := s.kube.RbacV1().Roles(f.ns).Get(context.Background(), contract.AgentName("mysql"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	granted := false
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if res == "pods/exec" {
				granted = len(r.ResourceNames) == 1 && r.ResourceNames[0] == "mariadb"
			}
		}
	}
	if !granted {
		t.Errorf("the agent's Role does not grant pods/exec on exactly the database's Pod: %+v", role.Rules)
	}
}
