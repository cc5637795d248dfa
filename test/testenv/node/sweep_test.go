package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

func sysctlValues(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range kernelSysctls() {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = strings.TrimSpace(string(b))
	}
	return out
}

// TestKilledNodeIsSwept: a node whose caller and supervisor were killed
// outright (a test binary killed by its timeout) leaves its namespace,
// cgroups and the kubelet's sysctls behind; the next Start sweeps them.
func TestKilledNodeIsSwept(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the node needs root")
	}
	root := testenv.RepoRoot()
	sup := filepath.Join(t.TempDir(), "stash-node")
	build := exec.Command("go", "build", "-o", sup, "./hack/node")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./hack/node: %v: %s", err, out)
	}
	before := sysctlValues(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n, err := Start(ctx, Options{BinDir: filepath.Join(root, "bin"), Supervisor: sup, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ns := n.Plan.Netns
	t.Cleanup(func() { cleanupNode(n.Plan) })
	t.Logf("node up in %s; sysctls before %v, while running %v", n.StartTime.Round(time.Millisecond), before, sysctlValues(t))

	// The supervisor dies without a word; its daemons follow (Pdeathsig).
	if err := n.sup.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n.supDone
	if len((&Plan{Netns: ns, CgroupRoot: ns}).Leftovers()) == 0 {
		t.Fatal("a killed supervisor left nothing: the test proves nothing")
	}
	SweepStale()
	if left := (&Plan{Netns: ns, CgroupRoot: ns}).Leftovers(); len(left) > 0 {
		t.Fatalf("the sweep left: %v", left)
	}
	if len(registeredIn(registryDir())) == 0 {
		if after := sysctlValues(t); !equal(after, before) {
			t.Fatalf("sysctls not restored: before %v, after %v", before, after)
		}
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
