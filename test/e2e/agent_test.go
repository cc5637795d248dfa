package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

func kube(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// newNamespace creates a namespace with the database's and the repositories' Secrets.
func newNamespace(t *testing.T, name string) {
	t.Helper()
	install(t)
	mustOK(t, kubectl(t, "", "create", "namespace", name), "create namespace")
}

func createSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	if _, err := kube(t).CoreV1().Secrets(ns).Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Secret %s/%s: %v", ns, name, err)
	}
}

// startAgent runs the agent of the rendered Deployment as a local process
// (see testenv.StartAgent) and stops it at cleanup.
func startAgent(t *testing.T, ns, appBinding string) *testenv.AgentProcess {
	t.Helper()
	p, err := s.env.Control.StartAgent(context.Background(), testenv.AgentOptions{
		Namespace: ns, Deployment: contract.AgentName(appBinding), BinDir: s.binDir, Path: s.path, Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() {
		p.Stop(20 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(p.LogPath)
			t.Logf("agent log (%s):\n%s", p.LogPath, tailString(string(b), 60))
		}
	})
	return p
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls cond every 200ms until it is true or timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// poll reports whether cond became true within timeout, checked every 200ms.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return cond()
}
