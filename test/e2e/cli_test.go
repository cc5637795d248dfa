package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
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
	if !strings.Contains(r.stdout, "no-agent") || !strings.Contains(r.stdout, "is not running") {
		t.Errorf("status without a running agent does not flag it:\n%s", r.stdout)
	}

	agent := startAgent(t, ns, "db")
	r = kubectl(t, "", "stash", "-n", ns, "trigger", "nightly", "--wait", "--timeout", "3m")
	mustOK(t, r, "trigger")
	checkPipedWait(t, r, "BackupSession")
	// restore --wait shares the wait: the same lines, into the same database.
	r = kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/db", "--wait", "--timeout", "3m")
	mustOK(t, r, "restore --wait")
	// A full restore says first, as kubectl says its warnings, that it
	// brings the snapshot's accounts; the wait's lines follow.
	warning, rest, _ := strings.Cut(r.stderr, "\n")
	if !strings.HasPrefix(warning, "Warning: this restore brings the snapshot's mysql schema") {
		t.Errorf("restore without --exclude 'mysql.*' does not warn of the accounts first:\n%s", r.stderr)
	} else {
		r.stderr = rest
	}
	checkPipedWait(t, r, "RestoreSession")
	var rows []struct {
		Name          string   `json:"name"`
		LastPhase     string   `json:"lastPhase"`
		AgentHealthy  bool     `json:"agentHealthy"`
		SnapshotCount int64    `json:"snapshotCount"`
		Problems      []string `json:"problems"`
		Health        string   `json:"health"`
		RecoveryPoint *time.Time
		NextSchedule  *time.Time
	}
	eventually(t, 30*time.Second, "a healthy status", func() bool {
		r = kubectl(t, "", "stash", "-n", ns, "status", "-o", "json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rows) != nil || len(rows) != 1 {
			return false
		}
		return rows[0].LastPhase == "Succeeded" && rows[0].AgentHealthy && rows[0].SnapshotCount == 1 && len(rows[0].Problems) == 0 &&
			rows[0].Health == "ok" && rows[0].RecoveryPoint != nil
	})
	r = kubectl(t, "", "stash", "-n", ns, "describe")
	mustOK(t, r, "describe")
	if !strings.HasPrefix(strings.SplitN(r.stdout, "\n", 2)[1], "ok ") || !strings.Contains(r.stdout, "nightly") || !strings.Contains(r.stdout, "Succeeded") || !strings.Contains(r.stdout, " 1 snapshot ") {
		t.Errorf("status table:\n%s", r.stdout)
	}
	// -o wide shows more columns than the table: the last snapshot and the agent pod.
	var wideRows []struct {
		LastSnapshot string `json:"lastSnapshot"`
		AgentPod     string `json:"agentPod"`
		ClaimedBy    string `json:"claimedBy"`
	}
	r = kubectl(t, "", "stash", "-n", ns, "status", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &wideRows); err != nil || len(wideRows) != 1 || wideRows[0].LastSnapshot == "" || wideRows[0].ClaimedBy == "" {
		t.Errorf("status -o json lacks the last snapshot or claimedBy: %v\n%s", err, r.stdout)
	}
	r = kubectl(t, "", "stash", "-n", ns, "status", "-o", "wide")
	mustOK(t, r, "status -o wide")
	header := strings.SplitN(r.stdout, "\n", 2)[0]
	for _, col := range []string{"NEXT SCHEDULE", "LAST SNAPSHOT", "AGENT POD", "CLAIMED BY"} {
		if !strings.Contains(header, col) {
			t.Errorf("status -o wide lacks %s:\n%s", col, r.stdout)
		}
	}
	if len(wideRows) == 1 && !strings.Contains(r.stdout, wideRows[0].LastSnapshot) {
		t.Errorf("status -o wide does not show snapshot %s:\n%s", wideRows[0].LastSnapshot, r.stdout)
	}
	if def := kubectl(t, "", "stash", "-n", ns, "status"); strings.Contains(def.stdout, "LAST SNAPSHOT") {
		t.Errorf("the default status table has the wide columns:\n%s", def.stdout)
	}

	// download writes --to-file; -o, an output format everywhere, is refused.
	dump := filepath.Join(t.TempDir(), "nightly.sql")
	r = kubectl(t, "", "stash", "-n", ns, "download", "repo", "--snapshot", "latest", "--to-file", dump)
	mustOK(t, r, "download --to-file")
	if b, err := os.ReadFile(dump); err != nil || !strings.Contains(string(b), "CREATE TABLE `items`") {
		t.Errorf("downloaded dump: %v, %d bytes", err, len(b))
	}
	r = kubectl(t, "", "stash", "-n", ns, "download", "repo", "--snapshot", "latest", "--to-file", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "CREATE TABLE `items`") {
		t.Errorf("download --to-file -: exit %d, %d bytes on stdout", r.code, len(r.stdout))
	}
	r = kubectl(t, "", "stash", "-n", ns, "download", "repo", "--snapshot", "latest", "-o", "json")
	if r.code != 2 || !strings.Contains(r.stderr, "--to-file") || fileExists("json") {
		t.Errorf("download -o json: exit %d, want 2 naming --to-file:\n%s", r.code, r.stderr)
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

	// After a backup the Repository's columns are filled, except INTEGRITY:
	// a backup reads nothing back, so only a check or verification says.
	repoField := func(path string) string {
		r := kubectl(t, "", "-n", ns, "get", "repository", "repo", "-o", "jsonpath={"+path+"}")
		mustOK(t, r, "get repository "+path)
		return r.stdout
	}
	if size, n, last, integrity := repoField(".status.totalSize"), repoField(".status.snapshotCount"), repoField(".status.lastBackupTime"), repoField(".status.integrity"); size == "" || n == "" || n == "0" || last == "" || integrity != "" {
		t.Errorf("Repository status after backups: size %q, snapshots %q, last backup %q, integrity %q; want the first three filled and no integrity verdict", size, n, last, integrity)
	}

	// unlock and check run restic here, with the Repository's credentials;
	// check records its verdict in the status.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "unlock", "repo"), "unlock")
	r = kubectl(t, "", "stash", "-n", ns, "check", "repo", "--read-data-subset", "50%")
	mustOK(t, r, "check")
	if !strings.Contains(r.stdout, "no errors") {
		t.Errorf("check output: %s", r.stdout)
	}
	if got := repoField(".status.integrity"); got != "true" {
		t.Errorf("Repository integrity after a clean check: %q, want true", got)
	}
	if r := kubectl(t, "", "-n", ns, "get", "repositories", "repo", "--no-headers"); !strings.HasPrefix(strings.Join(strings.Fields(r.stdout), " "), "repo true ") {
		t.Errorf("kubectl get repositories after a check: %q, want INTEGRITY true", r.stdout)
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

// checkPipedWait checks what --wait prints when its output is not a
// terminal: whole lines (no carriage returns or escape codes), each naming
// the session, no phase line repeated, and the outcome on stdout.
func checkPipedWait(t *testing.T, r result, kind string) {
	t.Helper()
	name := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasSuffix(l, " created") {
			name = createdName(l)
		}
	}
	if strings.ContainsAny(r.stderr, "\r\x1b") {
		t.Errorf("piped --wait wrote terminal control characters:\n%q", r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("--wait printed no progress lines; stdout:\n%s", r.stdout)
	}
	prev := ""
	for _, l := range lines {
		if !strings.HasPrefix(l, name+": ") {
			t.Errorf("progress line %q does not start with %q", l, name+": ")
		}
		if l == prev {
			t.Errorf("progress line repeated: %q", l)
		}
		prev = l
	}
	if !strings.Contains(r.stdout, kind+" "+name+" Succeeded in ") {
		t.Errorf("--wait outcome:\n%s", r.stdout)
	}
}
