package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// runAgent starts the agent of a rendered Deployment against the `up`
// environment and keeps it running until SIGTERM.
func runAgent(dir, ns, dep string) error {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return fmt.Errorf("no environment in %s: run `make up`: %w", dir, err)
	}
	var st testenv.State
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		return err
	}
	cp := &testenv.ControlPlane{URL: rc.Host, Admin: rc, CA: &testenv.CA{CertPEM: ca}}
	root := testenv.RepoRoot()
	bin := filepath.Join(root, "bin")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := cp.StartAgent(ctx, testenv.AgentOptions{Namespace: ns, Deployment: dep, BinDir: bin, Path: bin + ":" + os.Getenv("PATH"), Dir: filepath.Join(dir, "agents", ns, dep)})
	if err != nil {
		return err
	}
	fmt.Printf("agent %s/%s running (pid %d, metrics on http://%s/metrics, log %s)\n", ns, dep, p.Pid(), p.Listen, p.LogPath)
	<-ctx.Done()
	p.Stop(20 * time.Second)
	return nil
}
