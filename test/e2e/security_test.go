package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// agentClient authenticates as the agent's ServiceAccount.
func agentClient(t *testing.T, ns, appBinding string) (kubernetes.Interface, *client.Stash) {
	t.Helper()
	tok, err := kube(t).CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), contract.AgentName(appBinding),
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: s.env.Control.URL, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: s.env.Control.CA.CertPEM}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.NewStash(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, st
}

// cmdlineWatcher samples every process's argv while it runs.
type cmdlineWatcher struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	leaks  []string
	secret []string
	seen   atomic.Int64
}

func watchCmdlines(secrets ...string) *cmdlineWatcher {
	w := &cmdlineWatcher{stop: make(chan struct{}), secret: secrets}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				if err != nil || len(b) == 0 {
					continue
				}
				w.seen.Add(1)
				for _, sec := range w.secret {
					if strings.Contains(string(b), sec) {
						w.mu.Lock()
						w.leaks = append(w.leaks, strings.ReplaceAll(string(b), "\x00", " ")[:40])
						w.mu.Unlock()
					}
				}
			}
		}
	}()
	return w
}

func (w *cmdlineWatcher) done(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.wg.Wait()
	if len(w.leaks) > 0 {
		t.Errorf("a password was on the command line of: %v", w.leaks)
	}
	if w.seen.Load() == 0 {
		t.Errorf("the /proc watcher saw no processes")
	}
}

// TestAgentLeastPrivilegeAndSecretHygiene runs a backup, a failing backup and
// a restore with only the agent's rights, then proves what it cannot do and
// that no password leaked anywhere.
func TestAgentLeastPrivilegeAndSecretHygiene(t *testing.T) {
	f := newBackupFixture(t, "rbac-e2e", s.env.MariaDBs[0])
	ns := f.ns
	dir := t.TempDir()
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass})
	createSecret(t, ns, "unrelated", map[string]string{"token": "do-not-read"})
	createSecret(t, ns, "wrong-auth", map[string]string{"username": f.db.User, "password": "wrong-" + f.db.Password})
	mustOK(t, kubectl(t, "", "create", "namespace", "rbac-e2e-elsewhere"), "ns")
	createSecret(t, "rbac-e2e-elsewhere", "foreign", map[string]string{"x": "y"})

	watch := watchCmdlines(f.db.Password, f.repoPass)
	var out strings.Builder
	record := func(r result) result { out.WriteString(r.stdout + r.stderr); return r }
	record(mustRun(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", dir, "--secret", "repo-creds"))
	record(mustRun(t, "", "stash", "-n", ns, "create", "backupconfig", "good", "--target", "appbinding/db", "--repository", "repo", "--param", "args=--databases inventory", "--pushgateway", s.env.Pushgateway.URL))
	agentDB := startAgent(t, ns, "db")
	record(mustRun(t, "", "stash", "-n", ns, "trigger", "good", "--wait", "--timeout", "3m"))
	// A failing backup: the AppBinding's Secret has a wrong password.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "bad", "--url", f.db.Addr(), "--secret", "wrong-auth", "--type", "mariadb"), "appbinding bad")
	record(mustRun(t, "", "stash", "-n", ns, "create", "backupconfig", "bad", "--target", "appbinding/bad", "--repository", "repo", "--pushgateway", s.env.Pushgateway.URL))
	agentBad := startAgent(t, ns, "bad")
	if r := record(kubectl(t, "", "stash", "-n", ns, "trigger", "bad", "--wait", "--timeout", "2m")); r.code != 3 {
		t.Errorf("failing backup: exit %d", r.code)
	}
	// A restore, into the same database.
	r := record(mustRun(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/db", "--wait", "--timeout", "3m"))
	_ = r
	watch.done(t)

	cs, st := agentClient(t, ns, "db")
	ctx := context.Background()
	t.Run("what the agent may not do", func(t *testing.T) {
		forbidden := func(what string, err error) {
			t.Helper()
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: want Forbidden, got %v", what, err)
			}
		}
		_, err := cs.CoreV1().Secrets(ns).Get(ctx, "unrelated", metav1.GetOptions{})
		forbidden("read another Secret", err)
		_, err = cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		forbidden("list Secrets", err)
		_, err = cs.CoreV1().Secrets("rbac-e2e-elsewhere").Get(ctx, "foreign", metav1.GetOptions{})
		forbidden("read a Secret in another namespace", err)
		_, err = st.BackupConfigurations("rbac-e2e-elsewhere").List(ctx, metav1.ListOptions{})
		forbidden("list another namespace's BackupConfigurations", err)
		_, err = st.AppBindings(ns).Get(ctx, "bad")
		forbidden("read another database's AppBinding", err)
		err = cs.Discovery().RESTClient().Delete().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/tasks.stash.appscode.com").Do(ctx).Error()
		forbidden("delete a CRD", err)
		_, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "escalate"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"*"}}}}, metav1.CreateOptions{})
		forbidden("create a Role", err)
		_, err = cs.RbacV1().Roles(ns).Patch(ctx, contract.AgentName("db"), types.MergePatchType, []byte(`{"rules":[]}`), metav1.PatchOptions{})
		forbidden("patch its own Role", err)
		_, err = cs.AppsV1().Deployments(ns).Patch(ctx, contract.AgentName("db"), types.MergePatchType, []byte(`{"spec":{"replicas":2}}`), metav1.PatchOptions{})
		forbidden("patch its Deployment", err)
		_, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		forbidden("list Pods", err)
		// And what it needs still works.
		if _, err := cs.CoreV1().Secrets(ns).Get(ctx, "db-auth", metav1.GetOptions{}); err != nil {
			t.Errorf("the agent cannot read its own database Secret: %v", err)
		}
	})

	t.Run("no password in logs, output, statuses, Events or metrics", func(t *testing.T) {
		for _, sec := range []string{f.db.Password, f.repoPass} {
			if strings.Contains(out.String(), sec) {
				t.Errorf("a password appears in the plugin's output")
			}
		}
		for _, log := range []string{agentDB.LogPath, agentBad.LogPath} {
			assertNoSecrets(t, ns, log, f.db.Password, f.repoPass, "wrong-"+f.db.Password)
		}
		resp := pushgatewayText(t)
		for _, sec := range []string{f.db.Password, f.repoPass} {
			if strings.Contains(resp, sec) {
				t.Errorf("a password appears in the pushed metrics")
			}
		}
	})
}

func mustRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := kubectl(t, stdin, args...)
	mustOK(t, r, strings.Join(args, " "))
	return r
}

// TestRenderedAgentPassesRestrictedPodSecurity admits a Pod made from the
// rendered Deployment's template into a namespace that enforces the
// "restricted" Pod Security Standard (server-side dry run: no kubelet needed).
func TestRenderedAgentPassesRestrictedPodSecurity(t *testing.T) {
	install(t)
	ns := "psa-e2e"
	ctx := context.Background()
	_, err := kube(t).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
	}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	createSecret(t, ns, "db-auth", map[string]string{"username": "u", "password": "p"})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "db", "--url", "db:3306", "--secret", "db-auth"), "appbinding")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db"), "agent apply")
	dep, err := kube(t).AppsV1().Deployments(ns).Get(ctx, contract.AgentName("db"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent-admission", Namespace: ns, Labels: dep.Spec.Template.Labels}, Spec: dep.Spec.Template.Spec}
	if _, err := kube(t).CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("the rendered agent pod is rejected by the restricted policy: %v", err)
	}
	// The policy is really enforced: a privileged variant is turned away.
	bad := pod.DeepCopy()
	bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	if _, err := kube(t).CoreV1().Pods(ns).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Fatalf("a pod allowing privilege escalation was not rejected (err %v): the namespace does not enforce restricted", err)
	}
}

// TestHostileInput: every case ends in a clear error, and nothing is lost.
func TestHostileInput(t *testing.T) {
	f := newBackupFixture(t, "hostile-e2e", s.env.MariaDBs[1])
	ns := f.ns
	ctx := context.Background()
	dir := t.TempDir()
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass})
	createSecret(t, ns, "wrong-repo-creds", map[string]string{"RESTIC_PASSWORD": "not-" + f.repoPass})
	createSecret(t, ns, "nopass-auth", map[string]string{"username": f.db.User})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", dir, "--secret", "repo-creds"), "repo")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "base", "--target", "appbinding/db", "--repository", "repo", "--param", "args=--databases inventory"), "bc")
	startAgent(t, ns, "db")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "base", "--wait", "--timeout", "3m"), "baseline backup")
	snapshots := func() int { return resticSnapshots(t, dir, f.repoPass, nil) }
	base := snapshots()

	apply := func(yaml string) { t.Helper(); mustOK(t, kubectl(t, yaml, "apply", "-n", ns, "-f", "-"), "apply") }
	bcYAML := func(name, extra string) string {
		return fmt.Sprintf(`apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata: {name: %s}
spec:
  repository: {name: repo}
  target: {ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}
%s`, name, extra)
	}
	// triggerFails triggers a config and expects a Failed session whose message has want.
	triggerFails := func(t *testing.T, config, want string) {
		t.Helper()
		r := kubectl(t, "", "stash", "-n", ns, "trigger", config, "--wait", "--timeout", "2m")
		if r.code != 3 || !strings.Contains(r.stderr, want) {
			t.Fatalf("trigger %s: exit %d, want 3 and %q:\n%s", config, r.code, want, r.stderr)
		}
	}

	t.Run("malformed cron schedule written as YAML", func(t *testing.T) {
		apply(bcYAML("badcron", `  schedule: "every tuesday"`))
		eventually(t, 30*time.Second, "the config to be marked Invalid", func() bool {
			bc, err := f.st.BackupConfigurations(ns).Get(ctx, "badcron")
			return err == nil && bc.Status.Phase == stashv1beta1.BackupInvokerInvalid
		})
		r := kubectl(t, "", "stash", "-n", ns, "status", "badcron")
		if !strings.Contains(r.stdout, "invalid schedule") {
			t.Errorf("status does not explain the bad schedule:\n%s", r.stdout)
		}
	})
	t.Run("unknown Task", func(t *testing.T) {
		apply(bcYAML("badtask", `  task: {name: postgres-backup-16}`))
		triggerFails(t, "badtask", `unknown Task "postgres-backup-16"`)
	})
	t.Run("AppBinding Secret lacks password", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {name: nopass}
spec: {type: mariadb, clientConfig: {url: "%s"}, secret: {name: nopass-auth}}`, f.db.Addr()))
		apply(strings.Replace(bcYAML("nopass", ""), "name: db}", "name: nopass}", 1))
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/nopass"), "agent")
		startAgent(t, ns, "nopass")
		triggerFails(t, "nopass", `Secret nopass-auth (AppBinding nopass) has no "password" key`)
	})
	t.Run("AppBinding Secret missing", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {name: nosecret}
spec: {type: mariadb, clientConfig: {url: "%s"}, secret: {name: does-not-exist}}`, f.db.Addr()))
		apply(strings.Replace(bcYAML("nosecret", ""), "name: db}", "name: nosecret}", 1))
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/nosecret"), "agent")
		startAgent(t, ns, "nosecret")
		triggerFails(t, "nosecret", "does-not-exist")
	})
	t.Run("wrong repository password", func(t *testing.T) {
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "wrongpw", "--backend", "local", "--path", dir, "--secret", "wrong-repo-creds"), "repo")
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "wrongpw", "--target", "appbinding/db", "--repository", "wrongpw"), "bc")
		triggerFails(t, "wrongpw", "RESTIC_PASSWORD in Secret wrong-repo-creds does not open the repository")
	})
	t.Run("unreachable backend", func(t *testing.T) {
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "gone", "--backend", "rest", "--url", "http://127.0.0.1:9/repo", "--secret", "repo-creds"), "repo")
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "gone", "--target", "appbinding/db", "--repository", "gone", "--session-timeout", "20s"), "bc")
		triggerFails(t, "gone", "repository gone")
	})
	t.Run("shell metacharacters in args are never interpreted", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "pwned")
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "shell", "--target", "appbinding/db", "--repository", "repo",
			"--param", fmt.Sprintf("args=--databases inventory;touch %s $(touch %s) `touch %s` | touch %s", marker, marker, marker, marker)), "bc")
		r := kubectl(t, "", "stash", "-n", ns, "trigger", "shell", "--wait", "--timeout", "2m")
		if r.code != 3 {
			t.Errorf("a dump of databases named by shell syntax did not fail: exit %d", r.code)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("a shell interpreted the args: %s exists", marker)
		}
	})
	t.Run("backquotes and SQL in database names", func(t *testing.T) {
		name := "we`ird'; DROP DATABASE inventory; --"
		q := "`" + strings.ReplaceAll(name, "`", "``") + "`"
		if _, err := f.db.Exec(ctx, "CREATE DATABASE "+q+"; CREATE TABLE "+q+".t (v VARCHAR(20)); INSERT INTO "+q+".t VALUES ('kept');"); err != nil {
			t.Fatal(err)
		}
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "weird", "--target", "appbinding/db", "--repository", "repo", "--param", "args=--all-databases"), "bc")
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "weird", "--wait", "--timeout", "3m"), "backup")
		if _, err := f.db.Exec(ctx, "DROP DATABASE "+q); err != nil {
			t.Fatal(err)
		}
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/db", "--wait", "--timeout", "3m"), "restore")
		got, err := f.db.Exec(ctx, "SELECT v FROM "+q+".t")
		if err != nil || strings.TrimSpace(got) != "kept" {
			t.Fatalf("the oddly named database did not come back: %q %v", got, err)
		}
		if got, _ := f.db.Exec(ctx, "SELECT COUNT(*) FROM inventory.items"); strings.TrimSpace(got) == "" {
			t.Fatalf("inventory was dropped by a database name")
		}
	})
	t.Run("names long enough to overflow derived names", func(t *testing.T) {
		long := strings.Repeat("l", 60)
		createSecret(t, ns, "long-auth", map[string]string{"username": f.db.User, "password": f.db.Password})
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", long, "--url", f.db.Addr(), "--secret", "long-auth", "--type", "mariadb"), "appbinding")
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", long, "--target", "appbinding/"+long, "--repository", "repo", "--param", "args=--databases inventory"), "bc")
		name := contract.AgentName(long)
		if len(name) > 63 {
			t.Fatalf("agent name %q is %d characters", name, len(name))
		}
		startAgent(t, ns, long)
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", long, "--wait", "--timeout", "3m"), "backup with long names")
	})
	t.Run("a Repository in a namespace that does not allow it", func(t *testing.T) {
		r := kubectl(t, "", "stash", "-n", "default", "create", "backupconfig", "x", "--target", "appbinding/db", "--repository", "repo")
		if r.code == 0 {
			t.Fatalf("accepted a config for an AppBinding that does not exist")
		}
		other := "hostile-e2e-other"
		mustOK(t, kubectl(t, "", "create", "namespace", other), "ns")
		createSecret(t, other, "db-auth", map[string]string{"username": f.db.User, "password": f.db.Password})
		mustOK(t, kubectl(t, "", "stash", "-n", other, "create", "appbinding", "db", "--url", f.db.Addr(), "--secret", "db-auth"), "appbinding")
		r = kubectl(t, "", "stash", "-n", other, "restore", "--repository", "repo", "--repository-namespace", ns, "--target", "appbinding/db")
		if r.code != 2 || !strings.Contains(r.stderr, "usagePolicy") {
			t.Fatalf("exit %d, want 2 naming the usagePolicy:\n%s", r.code, r.stderr)
		}
	})
	if n := snapshots(); n < base {
		t.Fatalf("snapshots were lost: %d -> %d", base, n)
	}
}
