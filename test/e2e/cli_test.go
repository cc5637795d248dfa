package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPluginCommands drives status, completion, copy, unlock, check, version
// and delete against the real API server and a real repository.
func TestPluginCommands(t *testing.T) {
	f := newBackupFixture(t, "cli-e2e", s.env.MariaDBs[1])
	ns := f.ns
	dir := t.TempDir()
	f.localRepo(t, dir)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "nightly", "--target", "appbinding/db", "--repository", "repo",
		"--schedule", "0 3 * * *", "--param", "args=--databases inventory"), "bc")

	// Before the agent runs, status explains what is wrong.
	r := kubectl(t, "", "stash", "-n", ns, "status")
	mustOK(t, r, "status")
	if !strings.Contains(r.stdout, "PROBLEM") || !strings.Contains(r.stdout, "is not running") {
		t.Errorf("status without a running agent does not flag it:\n%s", r.stdout)
	}

	agent := startAgent(t, ns, "db")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "nightly", "--wait", "--timeout", "3m"), "trigger")
	var rows []struct {
		Name          string   `json:"name"`
		LastPhase     string   `json:"lastPhase"`
		AgentHealthy  bool     `json:"agentHealthy"`
		SnapshotCount int64    `json:"snapshotCount"`
		Problems      []string `json:"problems"`
		NextSchedule  *time.Time
	}
	eventually(t, 30*time.Second, "a healthy status", func() bool {
		r = kubectl(t, "", "stash", "-n", ns, "status", "-o", "json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rows) != nil || len(rows) != 1 {
			return false
		}
		return rows[0].LastPhase == "Succeeded" && rows[0].AgentHealthy && rows[0].SnapshotCount == 1 && len(rows[0].Problems) == 0
	})
	r = kubectl(t, "", "stash", "-n", ns, "describe")
	mustOK(t, r, "describe")
	if !strings.Contains(r.stdout, "nightly") || !strings.Contains(r.stdout, "Succeeded") || strings.Contains(r.stdout, "PROBLEM") {
		t.Errorf("status table:\n%s", r.stdout)
	}

	// Completion returns names from the cluster.
	r = runCmd(t, "", "kubectl-stash", "__complete", "-n", ns, "trigger", "")
	if !strings.Contains(r.stdout, "nightly") {
		t.Errorf("completion of trigger lacks the BackupConfiguration:\n%s", r.stdout)
	}
	r = runCmd(t, "", "kubectl-stash", "__complete", "-n", ns, "restore", "--target", "")
	if !strings.Contains(r.stdout, "appbinding/db") {
		t.Errorf("completion of --target lacks appbinding/db:\n%s", r.stdout)
	}
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if r := runCmd(t, "", "kubectl-stash", "completion", sh); r.code != 0 || len(r.stdout) < 100 {
			t.Errorf("completion %s: exit %d", sh, r.code)
		}
	}

	// uninstall refuses while Stash objects exist, and deletes nothing.
	r = kubectl(t, "", "stash", "uninstall")
	if r.code != 2 || !strings.Contains(r.stderr, "refusing to uninstall") {
		t.Errorf("uninstall with objects present: exit %d: %s", r.code, r.stderr)
	}
	mustOK(t, kubectl(t, "", "get", "crd", "backupconfigurations.stash.appscode.com"), "CRD still there")

	// version lists the agents.
	r = kubectl(t, "", "stash", "-n", ns, "version")
	mustOK(t, r, "version")
	if !strings.Contains(r.stdout, "stash-agent-db") {
		t.Errorf("version does not list the agent:\n%s", r.stdout)
	}

	// unlock and check run restic here, with the Repository's credentials.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "unlock", "repo"), "unlock")
	r = kubectl(t, "", "stash", "-n", ns, "check", "repo", "--read-data-subset", "50%")
	mustOK(t, r, "check")
	if !strings.Contains(r.stdout, "no errors") {
		t.Errorf("check output: %s", r.stdout)
	}

	// copy to another namespace.
	other := "cli-e2e-copy"
	mustOK(t, kubectl(t, "", "create", "namespace", other), "namespace")
	for _, kind := range []string{"secret repo-creds", "repository repo", "backupconfig nightly"} {
		mustOK(t, kubectl(t, "", append(append([]string{"stash", "-n", ns, "copy"}, strings.Fields(kind)...), "--to-namespace", other)...), "copy "+kind)
	}
	if _, err := f.st.BackupConfigurations(other).Get(context.Background(), "nightly"); err != nil {
		t.Errorf("copied BackupConfiguration: %v", err)
	}

	// delete keeps the data unless asked, and asks before wiping.
	r = kubectl(t, "no\n", "stash", "-n", ns, "delete", "backupconfig", "nightly", "--wipe-repository")
	if r.code != 2 || !strings.Contains(r.stderr, "not confirmed") {
		t.Errorf("wipe without confirmation: exit %d: %s", r.code, r.stderr)
	}
	agent.Stop(20 * time.Second)
	r = kubectl(t, "", "stash", "-n", ns, "delete", "backupconfig", "nightly")
	mustOK(t, r, "delete")
	if !strings.Contains(r.stdout, "deployment.apps/stash-agent-db deleted") {
		t.Errorf("delete did not remove the agent:\n%s", r.stdout)
	}
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 1 {
		t.Errorf("delete without --wipe-repository changed the snapshots: %d", n)
	}
	if _, err := kube(t).AppsV1().Deployments(ns).Get(context.Background(), "stash-agent-db", metav1.GetOptions{}); err == nil {
		t.Errorf("agent Deployment still exists")
	}
	// The copy in the other namespace points at the same data: wipe it there.
	r = kubectl(t, "", "stash", "-n", other, "delete", "backupconfig", "nightly", "--wipe-repository", "--yes")
	mustOK(t, r, "delete --wipe-repository --yes")
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 0 {
		t.Errorf("--wipe-repository left %d snapshots", n)
	}
}
