package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentApplyGrantsRepositories: `agent apply` recomputes the Role from
// what targets the AppBinding, so a RestoreSession applied as YAML after the
// agent, from another Repository, is granted by running it again; and
// --repository grants a Repository that nothing names yet. What the agent
// does with such a RestoreSession is not tested here.
func TestAgentApplyGrantsRepositories(t *testing.T) {
	const ns = "agent-repos-cli"
	newNamespace(t, ns)
	createSecret(t, ns, "db-auth", map[string]string{"username": "root", "password": "db-Pa$$"})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "db", "--host", "127.0.0.1", "--port", "3306", "--secret", "db-auth", "--type", "mariadb", "--version", "10.11"), "appbinding")
	for _, r := range []string{"repo", "other", "third"} {
		createSecret(t, ns, r+"-creds", map[string]string{"RESTIC_PASSWORD": r + "-pw"})
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", r, "--backend", "local", "--pvc", "backups", "--sub-path", r, "--secret", r+"-creds"), "repository "+r)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "nightly", "--target", "appbinding/db", "--repository", "repo"), "backupconfig")

	secrets := func() []string {
		t.Helper()
		role, err := kube(t).RbacV1().Roles(ns).Get(context.Background(), "stash-agent-db", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("read the agent's Role: %v", err)
		}
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "secrets") {
				return r.ResourceNames
			}
		}
		return nil
	}
	want := func(what string, names ...string) {
		t.Helper()
		if got := secrets(); !slices.Equal(got, names) {
			t.Fatalf("%s: the Role grants Secrets %v, want %v", what, got, names)
		}
	}
	want("after create backupconfig", "db-auth", "repo-creds")

	// A RestoreSession from another Repository, applied as YAML after the agent.
	rs := `apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata: {name: from-other}
spec:
  repository: {name: other}
  target:
    ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}
    rules: [{snapshots: [latest]}]`
	mustOK(t, kubectl(t, rs, "apply", "-n", ns, "-f", "-"), "apply RestoreSession")
	want("before agent apply", "db-auth", "repo-creds")

	r := kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db")
	mustOK(t, r, "agent apply")
	if !strings.Contains(r.stdout, "role.rbac.authorization.k8s.io/stash-agent-db serverside-applied") {
		t.Errorf("agent apply output:\n%s", r.stdout)
	}
	want("agent apply with no flags", "db-auth", "other-creds", "repo-creds")

	// --repository grants one no object names yet, on top of the others.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db", "--repository", "third"), "agent apply --repository third")
	want("agent apply --repository third", "db-auth", "other-creds", "repo-creds", "third-creds")

	// The set is recomputed, not carried over: without the flag, third goes.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db"), "agent apply again")
	want("agent apply without --repository", "db-auth", "other-creds", "repo-creds")

	// A missing Repository is refused, naming the fix; nothing changes.
	r = kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db", "--repository", "nope")
	if r.code != 2 || !strings.Contains(r.stderr, "Repository nope not found") || !strings.Contains(r.stderr, "kubectl stash create repository nope") {
		t.Errorf("--repository nope: exit %d, want 2 naming the fix:\n%s", r.code, r.stderr)
	}
	r = kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db", "--repository", "elsewhere/repo")
	if r.code != 2 || !strings.Contains(r.stderr, "Repository repo not found in namespace elsewhere") {
		t.Errorf("--repository elsewhere/repo: exit %d:\n%s", r.code, r.stderr)
	}
	want("after the refusals", "db-auth", "other-creds", "repo-creds")

	// --hook-exec-pod grants exec into that one Pod, and a later agent apply keeps it.
	execRule := func() []string {
		t.Helper()
		role, err := kube(t).RbacV1().Roles(ns).Get(context.Background(), "stash-agent-db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "pods/exec") {
				return r.ResourceNames
			}
		}
		return nil
	}
	if got := execRule(); got != nil {
		t.Fatalf("pods/exec granted without --hook-exec-pod: %v", got)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db", "--hook-exec-pod", "mysql-0"), "agent apply --hook-exec-pod")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db"), "agent apply keeps the hook pod")
	if got := execRule(); !slices.Equal(got, []string{"mysql-0"}) {
		t.Errorf("pods/exec resourceNames %v, want [mysql-0]", got)
	}
	dep, err := kube(t).AppsV1().Deployments(ns).Get(context.Background(), "stash-agent-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if args := dep.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--hook-exec-pod=mysql-0") {
		t.Errorf("agent args lack --hook-exec-pod=mysql-0: %v", args)
	}
}
