package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// bench is one run: the environment, the clients and what was measured.
type bench struct {
	cfg     config
	work    string // data, repositories, logs
	ownWork bool   // work was made here, so it is removed afterwards
	log     io.Writer
	toolBin string // the repo's bin/: restic, kube-apiserver, ...
	binDir  string // freshly built kubectl-stash and stash-agent
	path    string // PATH for kubectl, the plugin and the agent
	restic  string
	db      database.Client

	env      *testenv.Env
	src, dst *testenv.MariaDB
	stash    *client.Stash
	kube     kubernetes.Interface
	agents   map[string]*testenv.AgentProcess // by AppBinding
	repoPass string

	res *results
}

func newBench(cfg config, log io.Writer) (*bench, error) {
	b := &bench{cfg: cfg, log: log, agents: map[string]*testenv.AgentProcess{}, res: &results{}}
	b.toolBin = filepath.Join(testenv.RepoRoot(), "bin")
	b.restic = filepath.Join(b.toolBin, "restic")
	if _, err := os.Stat(b.restic); err != nil {
		return nil, fmt.Errorf("restic: %w (run `make tools`)", err)
	}
	var err error
	if b.db, err = database.FindClient(); err != nil {
		return nil, err
	}
	if cfg.WorkDir != "" {
		b.work, err = filepath.Abs(cfg.WorkDir)
		if err == nil {
			err = os.MkdirAll(b.work, 0o700)
		}
	} else {
		b.work, err = os.MkdirTemp("", "stash-bench-")
		b.ownWork = true
	}
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	b.binDir = filepath.Join(b.work, "bin")
	b.path = b.binDir + string(os.PathListSeparator) + b.toolBin + string(os.PathListSeparator) + os.Getenv("PATH")
	b.repoPass = "bench-repo-" + fmt.Sprint(time.Now().UnixNano())
	return b, nil
}

// close stops every agent and server, and removes the work directory unless kept.
func (b *bench) close() {
	for name, a := range b.agents {
		a.Stop(20 * time.Second)
		delete(b.agents, name)
	}
	if b.env != nil {
		b.env.Stop()
	}
	if b.ownWork && !b.cfg.Keep {
		_ = os.RemoveAll(b.work)
		return
	}
	b.logf("work directory kept: %s", b.work)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// step logs the start of a phase and returns a function that logs its end.
func (b *bench) step(name string) func() {
	start := time.Now()
	b.logf("== %s", name)
	return func() { b.logf("   %s done in %s", name, time.Since(start).Round(100*time.Millisecond)) }
}

// environ is our environment with PATH and KUBECONFIG for kubectl, and no
// inherited RESTIC_* variable.
func (b *bench) environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "KUBECONFIG" || strings.HasPrefix(k, "RESTIC_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+b.path)
	if b.env != nil {
		env = append(env, "KUBECONFIG="+b.env.Control.Kubeconfig)
	}
	return append(env, extra...)
}

// run runs a command to completion and returns its stdout and how long it
// took. The error names the command and carries the end of its stderr.
// Arguments never hold secrets here (they travel in env or option files).
func (b *bench) run(ctx context.Context, timeout time.Duration, stdin io.Reader, env []string, name string, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = b.environ(env...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return out.String(), d, fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, tailLines(errb.String(), 15))
	}
	return out.String(), d, nil
}

// kubectl runs the real kubectl, which finds kubectl-stash on PATH.
func (b *bench) kubectl(ctx context.Context, timeout time.Duration, args ...string) (string, time.Duration, error) {
	return b.run(ctx, timeout, nil, nil, "kubectl", args...)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
