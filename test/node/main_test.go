// Package node runs the agent where users run it: as a Pod from the
// Deployment `kubectl stash` renders, with the image `make image` builds, on a
// real kubelet node (test/testenv/node). What only a Pod can show is proven
// here: the image, mounts, securityContext, probes, limits and pod deletion.
package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
	"github.com/kubectl-stash/kubectl-stash/test/testenv/node"
)

// suite is shared by this package's tests: one node, started once.
type suite struct {
	node   *node.Node
	binDir string // kubectl-stash, stash-agent and stash-node from this tree
	path   string
	kube   kubernetes.Interface
	images images
}

var s suite // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	root := testenv.RepoRoot()
	tools := filepath.Join(root, "bin")
	binDir, err := os.MkdirTemp("", "stash-node-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	if err := testenv.BuildBinaries(binDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := testenv.GoBuild(filepath.Join(binDir, "stash-node"), "./hack/node"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	imgs, err := buildImages(root, binDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build images:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	n, err := node.Start(ctx, node.Options{
		BinDir: tools, Supervisor: filepath.Join(binDir, "stash-node"),
		Images: imgs.archives(),
	})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the real node: %v\n", err)
		n.Stop()
		return 1
	}
	fmt.Fprintf(os.Stderr, "real node ready in %s (state in %s)\n", n.StartTime.Round(time.Millisecond), n.Plan.Dir)
	kube, err := kubernetes.NewForConfig(n.Admin)
	if err != nil {
		n.Stop()
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s = suite{node: n, binDir: binDir, path: binDir + ":" + tools + ":" + os.Getenv("PATH"), kube: kube, images: imgs}
	code := m.Run()
	n.Stop()
	if left := n.Plan.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "the node left %v on the machine\n", left)
		code = 1
	}
	if code != 0 || os.Getenv("STASH_KEEP_ENV") != "" {
		fmt.Fprintf(os.Stderr, "node logs kept in %s\n", n.Plan.Path("logs"))
	} else {
		os.RemoveAll(n.Plan.Dir)
	}
	return code
}

// result of a command.
type result struct {
	stdout, stderr string
	code           int
}

// kubectl runs the real kubectl, which finds kubectl-stash on PATH.
func kubectl(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlBin(), args...)
	cmd.Env = append(os.Environ(), "PATH="+s.path, "KUBECONFIG="+s.node.Kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kubectl %v: %v", args, err)
	}
	return r
}

func mustOK(t testing.TB, r result, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", what, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// kubectlBin is the kubectl `make tools` links into bin/, found on the
// suite's PATH rather than the caller's.
func kubectlBin() string {
	for _, d := range filepath.SplitList(s.path) {
		if p := filepath.Join(d, "kubectl"); fileExists(p) {
			return p
		}
	}
	return "kubectl"
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
