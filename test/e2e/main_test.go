// Package e2e runs kubectl-stash and the agent against the real parts of
// test/testenv: kube-apiserver with etcd and RBAC, MariaDB, restic backends
// and a Pushgateway.
package e2e

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

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// suite is shared by the tests of this package: one environment, started once.
type suite struct {
	env    *testenv.Env
	binDir string // freshly built kubectl-stash and stash-agent, plus the tools
	path   string // PATH with binDir first
}

var s suite // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root := testenv.RepoRoot()
	binDir, err := os.MkdirTemp("", "stash-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	if err := testenv.BuildBinaries(binDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The tools (restic, ...) come from the repo's bin/; the plugin and the agent from this build.
	tools := filepath.Join(root, "bin")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	e, err := testenv.Start(ctx, testenv.Options{BinDir: tools, MariaDBs: 2, RestServer: true, S3: true, Pushgateway: true})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start environment: %v\n", err)
		if e != nil {
			e.Stop()
			fmt.Fprintf(os.Stderr, "logs kept in %s\n", e.Dir)
		}
		return 1
	}
	s = suite{env: e, binDir: binDir, path: binDir + string(os.PathListSeparator) + tools + string(os.PathListSeparator) + os.Getenv("PATH")}
	code := m.Run()
	e.Stop()
	if code != 0 || os.Getenv("STASH_KEEP_ENV") != "" {
		fmt.Fprintf(os.Stderr, "environment logs kept in %s\n", e.Dir)
	} else {
		os.RemoveAll(e.Dir)
	}
	return code
}

// result of a command.
type result struct {
	stdout, stderr string
	code           int
}

// kubectl runs the real kubectl (which discovers kubectl-stash on PATH) as the admin.
func kubectl(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return runCmd(t, stdin, append([]string{"kubectl"}, args...)...)
}

func runCmd(t testing.TB, stdin string, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := argv[0]
	for _, d := range filepath.SplitList(s.path) {
		if p := filepath.Join(d, argv[0]); fileExists(p) {
			bin = p
			break
		}
	}
	cmd := exec.CommandContext(ctx, bin, argv[1:]...)
	cmd.Env = append(os.Environ(), "PATH="+s.path, "KUBECONFIG="+s.env.Control.Kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", argv, err)
	}
	return r
}

func mustOK(t testing.TB, r result, what string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", what, r.code, r.stdout, r.stderr)
	}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
