package node

import (
	"strings"
	"testing"
	"time"
)

// TestStatusSaysWhyAnAgentHasNoPod: a hostPath Repository (--path) in a
// namespace that enforces the restricted standard. The plugin warns when the
// Repository is created; the ReplicaSet controller cannot create the agent's
// pod; `kubectl stash status` names the PodSecurity refusal and the fix.
func TestStatusSaysWhyAnAgentHasNoPod(t *testing.T) {
	ns := "status-nopod"
	restrictedNamespace(t, ns)
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": "pw"})
	createSecret(t, ns, "db-auth", map[string]string{"username": "root", "password": "unused"})
	mustOK(t, kubectl(t, "", "stash", "install"), "install")
	r := kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", "/var/backups/stash", "--secret", "repo-creds")
	mustOK(t, r, "repository on a hostPath")
	if !strings.Contains(r.stderr, "restricted") || !strings.Contains(r.stderr, "--pvc") {
		t.Errorf("--path gave no warning about restricted namespaces:\n%s", r.stderr)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "mysql", "--service", "mariadb:3306",
		"--secret", "db-auth", "--type", "mariadb", "--version", "10.11"), "appbinding")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "bc", "--target", "appbinding/mysql", "--repository", "repo"), "backupconfig")
	var out string
	if !poll(90*time.Second, func() bool {
		st := kubectl(t, "", "stash", "-n", ns, "status")
		out = st.stdout + st.stderr
		return strings.Contains(out, "violates PodSecurity") && strings.Contains(out, "hostPath")
	}) {
		t.Fatalf("status does not say why the agent has no pod:\n%s", out)
	}
	t.Logf("kubectl stash status:\n%s", out)
}
