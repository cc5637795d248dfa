package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// hookServer records the hooks that reached it; /fail answers 500.
type hookServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.calls = append(h.calls, fmt.Sprintf("%s %s %s token=%s", r.Method, r.URL.Path, body, r.Header.Get("X-Token")))
		h.mu.Unlock()
		if r.URL.Path == "/fail" {
			http.Error(w, "the application refused to flush", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

func (h *hookServer) port() int {
	_, p, _ := net.SplitHostPort(h.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

// TestHooks: hooks written in a BackupConfiguration and a RestoreSession,
// as Stash users write them, run from the agent against the database's
// host, with their outcome in the session's conditions. A failing
// preBackup hook fails the session before any dump; an exec hook the user
// did not opt in to makes the config Invalid, naming the fix.
func TestHooks(t *testing.T) {
	f := newBackupFixture(t, "hooks-e2e", s.env.MariaDBs[1])
	ns, ctx := f.ns, context.Background()
	dir := t.TempDir()
	f.localRepo(t, dir)
	srv := newHookServer(t)
	secretToken := "hook-token-d41d8cd98f00"
	config := func(name, prePath, extra string) string {
		return fmt.Sprintf(`apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata:
  name: %s
spec:
  repository:
    name: repo
  target:
    ref:
      apiVersion: appcatalog.appscode.com/v1alpha1
      kind: AppBinding
      name: db
  task:
    params:
    - name: args
      value: --databases inventory
  retentionPolicy:
    name: keep-all
    keepLast: 10
  hooks:
    preBackup:
      httpGet:
        path: %s
        port: %d
        httpHeaders:
        - name: X-Token
          value: %s
    postBackup:
      executionPolicy: OnSuccess
      httpPost:
        path: /post
        port: %d
        body: backed-up
%s`, name, prePath, srv.port(), secretToken, srv.port(), extra)
	}
	mustOK(t, kubectl(t, config("good", "/pre", ""), "-n", ns, "apply", "-f", "-"), "apply good")
	mustOK(t, kubectl(t, config("bad", "/fail", ""), "-n", ns, "apply", "-f", "-"), "apply bad")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/db"), "agent apply")
	agent := startAgent(t, ns, "db")

	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "good", "--wait", "--timeout", "3m"), "good backup")
	calls := srv.seen()
	if len(calls) != 2 || calls[0] != "GET /pre  token="+secretToken || calls[1] != "POST /post backed-up token=" {
		t.Fatalf("hooks seen by the server: %q; want the preBackup GET with its header, then the postBackup POST", calls)
	}
	bs := lastSession(t, f, "good")
	for _, typ := range []string{stashv1beta1.ConditionPreBackupHookExecutionSucceeded, stashv1beta1.ConditionPostBackupHookExecutionSucceeded} {
		if c := apimeta.FindStatusCondition(bs.Status.Conditions, typ); c == nil || c.Status != metav1.ConditionTrue {
			t.Errorf("%s: %+v", typ, c)
		}
	}

	// A failing preBackup hook: the session fails before the dump, and the
	// OnSuccess postBackup hook does not run.
	before := resticSnapshots(t, dir, f.repoPass, nil)
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "bad", "--wait", "--timeout", "3m")
	if r.code == 0 {
		t.Fatalf("a backup whose preBackup hook failed succeeded:\n%s", r.stdout)
	}
	bs = lastSession(t, f, "bad")
	c := apimeta.FindStatusCondition(bs.Status.Conditions, stashv1beta1.ConditionPreBackupHookExecutionSucceeded)
	if bs.Status.Phase != stashv1beta1.BackupSessionFailed || c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "500") {
		t.Errorf("after a failing preBackup hook: phase %s, condition %+v", bs.Status.Phase, c)
	}
	if !strings.Contains(bs.Status.Message, "no dump was started") {
		t.Errorf("message %q does not say no dump ran", bs.Status.Message)
	}
	if after := resticSnapshots(t, dir, f.repoPass, nil); after != before {
		t.Errorf("%d snapshots after a failed preBackup hook, %d before", after, before)
	}
	if n := len(srv.seen()); n != 3 {
		t.Errorf("%d hook calls; the OnSuccess postBackup hook ran after a failure", n)
	}

	// An exec hook without --hook-exec-pod: the config says why it cannot run.
	const execConfig = `apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata:
  name: execme
spec:
  repository:
    name: repo
  target:
    ref:
      apiVersion: appcatalog.appscode.com/v1alpha1
      kind: AppBinding
      name: db
  hooks:
    preBackup:
      exec:
        command: [sh, -c, "mysql -e 'FLUSH TABLES'"]
      containerName: mariadb
`
	mustOK(t, kubectl(t, execConfig, "-n", ns, "apply", "-f", "-"), "apply execme")
	eventually(t, 60*time.Second, "the exec-hook config to be Invalid", func() bool {
		bc, err := f.st.BackupConfigurations(ns).Get(ctx, "execme")
		if err != nil || bc.Status.Phase != stashv1beta1.BackupInvokerInvalid {
			return false
		}
		c := apimeta.FindStatusCondition(bc.Status.Conditions, stashv1beta1.ConditionValidationPassed)
		return c != nil && c.Reason == "InvalidHook" && strings.Contains(c.Message, "--hook-exec-pod")
	})

	// A restore's hooks: a tcpSocket preRestore and an httpGet postRestore.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, tcpPort, _ := net.SplitHostPort(ln.Addr().String())
	rs := fmt.Sprintf(`apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata:
  name: with-hooks
spec:
  repository:
    name: repo
  target:
    ref:
      apiVersion: appcatalog.appscode.com/v1alpha1
      kind: AppBinding
      name: db
    rules:
    - snapshots: [latest]
  hooks:
    preRestore:
      tcpSocket:
        port: %s
    postRestore:
      executionPolicy: Always
      httpGet:
        path: /post-restore
        port: %d
`, tcpPort, srv.port())
	mustOK(t, kubectl(t, rs, "-n", ns, "apply", "-f", "-"), "apply RestoreSession")
	done := waitRestore(t, f.st, ns, "with-hooks")
	if done.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("restore with hooks: %s: %s", done.Status.Phase, done.Status.Message)
	}
	for _, typ := range []string{stashv1beta1.ConditionPreRestoreHookExecutionSucceeded, stashv1beta1.ConditionPostRestoreHookExecutionSucceeded} {
		if c := apimeta.FindStatusCondition(done.Status.Conditions, typ); c == nil || c.Status != metav1.ConditionTrue {
			t.Errorf("%s: %+v", typ, c)
		}
	}
	if calls := srv.seen(); calls[len(calls)-1] != "GET /post-restore  token=" {
		t.Errorf("the postRestore hook did not reach the server: %q", calls)
	}
	// The header is the user's own spec; it must go nowhere else.
	out := kubectl(t, "", "get", "-n", ns, "backupsessions,restoresessions,events", "-o", "json")
	mustOK(t, out, "get sessions and events")
	if strings.Contains(out.stdout, secretToken) {
		t.Error("a hook's header value appears in a session's status or an Event")
	}
	if logCount(agent.LogPath, secretToken) > 0 {
		t.Error("a hook's header value appears in the agent's log")
	}
}

// lastSession is the newest BackupSession of a config.
func lastSession(t *testing.T, f *backupFixture, config string) *stashv1beta1.BackupSession {
	t.Helper()
	list, err := f.st.BackupSessions(f.ns).List(context.Background(), metav1.ListOptions{LabelSelector: stashv1beta1.LabelInvokerName + "=" + config})
	if err != nil || len(list.Items) == 0 {
		t.Fatalf("sessions of %s: %v", config, err)
	}
	newest := &list.Items[0]
	for i := range list.Items {
		if list.Items[i].CreationTimestamp.After(newest.CreationTimestamp.Time) {
			newest = &list.Items[i]
		}
	}
	return newest
}
