package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options configure a node. Zero values take the defaults.
type Options struct {
	// BinDir holds the tools `make tools` builds; Supervisor is stash-node.
	BinDir     string
	Supervisor string
	// Dir holds the node's state and logs; $TMPDIR/<name> when empty.
	Dir string
	// Address ranges inside the node's network namespace.
	NodeCIDR, PodCIDR, ServiceCIDR string
	// Images are OCI archives imported once the node is ready.
	Images []string
	// Fixtures are servers run on the node's address (see Fixture).
	Fixtures []Fixture
	// Runc is the OCI runtime (Debian's /usr/sbin/runc) and CgroupFS where
	// the cgroup v1 hierarchies are mounted (/sys/fs/cgroup).
	Runc, CgroupFS string
	// Detach lets the node outlive the caller (`make up`); StopDetached
	// stops it. Otherwise the caller's death tears it down.
	Detach bool
}

// Node is a running single-node cluster.
type Node struct {
	Plan *Plan
	// Kubeconfig is the admin's, reaching the API server on a loopback port
	// forwarded into the node's network namespace.
	Kubeconfig string
	Admin      *rest.Config
	// StartTime is how long the node took from nothing to usable.
	StartTime time.Duration

	sup      *exec.Cmd
	supDone  chan struct{}
	listener *net.TCPListener
}

// Defaults for the address ranges: private ranges, in the node's own
// network namespace only.
const (
	DefaultNodeCIDR    = "10.250.0.0/24"
	DefaultPodCIDR     = "10.251.0.0/24"
	DefaultServiceCIDR = "10.252.0.0/24"
)

// Start checks the machine, then starts a node. It fails within seconds, with
// the cause and the fix, when the machine cannot run one.
func Start(ctx context.Context, o Options) (n *Node, err error) {
	began := time.Now()
	// Ranges not given come from STASH_NODE_{NODE,POD,SERVICE}_CIDR, else the defaults.
	o.NodeCIDR = orEnv(o.NodeCIDR, "STASH_NODE_NODE_CIDR", DefaultNodeCIDR)
	o.PodCIDR = orEnv(o.PodCIDR, "STASH_NODE_POD_CIDR", DefaultPodCIDR)
	o.ServiceCIDR = orEnv(o.ServiceCIDR, "STASH_NODE_SERVICE_CIDR", DefaultServiceCIDR)
	if o.Supervisor == "" {
		o.Supervisor = filepath.Join(o.BinDir, "stash-node")
	}
	if o.Runc == "" {
		o.Runc = "/usr/sbin/runc"
	}
	if o.CgroupFS == "" {
		o.CgroupFS = cgroupFS
	}
	if err := Preflight(o); err != nil {
		return nil, err
	}
	SweepStale()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	name := "stash-node-" + hex.EncodeToString(id)
	if o.Dir == "" {
		o.Dir = filepath.Join(os.TempDir(), name)
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "images"), 0o755); err != nil {
		return nil, err
	}
	p := &Plan{
		Dir: o.Dir, BinDir: o.BinDir, Netns: name, NodeName: "stash-node", CgroupRoot: name,
		NodeCIDR: o.NodeCIDR, PodCIDR: o.PodCIDR, ServiceCIDR: o.ServiceCIDR,
		Fixtures: o.Fixtures, Runc: o.Runc,
	}
	if err := p.write(); err != nil {
		return nil, err
	}
	if err := p.writeConfig(); err != nil {
		return nil, err
	}
	if err := writePauseImage(p.Path("images", "pause.tar"), o.Supervisor); err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	if err := register(p); err != nil {
		return nil, fmt.Errorf("register the node: %w", err)
	}
	n = &Node{Plan: p}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if err := createNetns(ctx, p); err != nil {
		return n, err
	}
	if err := n.startSupervisor(o.Supervisor, o.Detach); err != nil {
		return n, err
	}
	if err := n.waitReady(ctx, 4*time.Minute); err != nil {
		return n, err
	}
	if err := n.writeKubeconfig(); err != nil {
		return n, err
	}
	for _, img := range o.Images {
		if err := n.ImportImage(ctx, img); err != nil {
			return n, err
		}
	}
	n.StartTime = time.Since(began)
	return n, nil
}

// startSupervisor runs `stash-node supervise` in a new mount namespace,
// inside the node's network namespace, with the API listener as fd 3. It
// gets SIGTERM when this process dies, so it tears the node down even then.
func (n *Node) startSupervisor(bin string, detach bool) error {
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	n.listener = l
	lf, err := l.File()
	if err != nil {
		return err
	}
	defer lf.Close()
	logf, err := os.OpenFile(n.Plan.Path("logs", "supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter (util-linux) is needed to enter the node's network namespace: %w", err)
	}
	cmd := exec.Command(nsenter, "--net=/run/netns/"+n.Plan.Netns, "--", bin, "supervise", "-dir", n.Plan.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the node supervisor: %w", err)
	}
	if err := os.WriteFile(n.Plan.Path("supervisor.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return err
	}
	n.sup, n.supDone = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.supDone) }()
	return nil
}

func (n *Node) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(n.Plan.Path("failed")); err == nil {
			return fmt.Errorf("node did not start (logs in %s): %s", n.Plan.Path("logs"), b)
		}
		if _, err := os.Stat(n.Plan.Path("ready")); err == nil {
			return nil
		}
		select {
		case <-n.supDone:
			if b, err := os.ReadFile(n.Plan.Path("failed")); err == nil {
				return fmt.Errorf("node did not start (logs in %s): %s", n.Plan.Path("logs"), b)
			}
			return fmt.Errorf("node supervisor exited before the node was ready: %s", lastLines(n.Plan.Path("logs", "supervisor.log"), 20))
		case <-ctx.Done():
			return fmt.Errorf("node not ready after %s; logs in %s:\n%s", timeout, n.Plan.Path("logs"), lastLines(n.Plan.Path("logs", "supervisor.log"), 20))
		case <-t.C:
		}
	}
}

// writeKubeconfig writes the admin kubeconfig for this side of the forward.
func (n *Node) writeKubeconfig() error {
	kc, err := clientcmd.LoadFromFile(n.Plan.Path("pki", "admin.kubeconfig"))
	if err != nil {
		return err
	}
	for _, c := range kc.Clusters {
		c.Server = "https://" + n.listener.Addr().String()
	}
	n.Kubeconfig = n.Plan.Path("kubeconfig")
	if err := clientcmd.WriteToFile(*kc, n.Kubeconfig); err != nil {
		return err
	}
	n.Admin, err = clientcmd.BuildConfigFromFlags("", n.Kubeconfig)
	if err != nil {
		return err
	}
	n.Admin.QPS, n.Admin.Burst = 50, 100
	return nil
}

// ImportImage imports an OCI archive into the node's containerd, under the
// reference its index names, so Pods that use it never pull.
func (n *Node) ImportImage(ctx context.Context, archive string) error {
	out, err := exec.CommandContext(ctx, n.Plan.Bin("ctr"), "--address", n.Plan.ContainerdSocket(),
		"-n", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("import %s into the node: %w: %s", archive, err, out)
	}
	return nil
}

// Command runs name inside the node's network and mount namespaces, as a
// process on the node would (fixtures on the node's address).
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	a := append([]string{"--target", fmt.Sprint(n.sup.Process.Pid), "--net", "--mount", "--", name}, args...)
	return exec.CommandContext(ctx, "nsenter", a...)
}

// Stop tears the node down: the supervisor stops every daemon in order, then
// whatever it could not remove goes here, and the namespace last.
func (n *Node) Stop() {
	if n == nil {
		return
	}
	if n.sup != nil {
		_ = n.sup.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.supDone:
		case <-time.After(90 * time.Second):
			_ = n.sup.Process.Kill()
			<-n.supDone
		}
	}
	if n.listener != nil {
		n.listener.Close()
	}
	cleanupNode(n.Plan)
}

// StopDetached stops a node started with Detach from its state directory:
// the supervisor tears it down, and whatever is left goes here.
func StopDetached(dir string) error {
	p, err := ReadPlan(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(p.Path("supervisor.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			deadline := time.Now().Add(90 * time.Second)
			for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
				time.Sleep(100 * time.Millisecond)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	cleanupNode(p)
	return os.RemoveAll(dir)
}

// cleanupNode removes what a node may have left: its processes, cgroups and
// network namespace, and restores the machine's sysctls.
func cleanupNode(p *Plan) {
	if id, err := netnsID("/run/netns/" + p.Netns); err == nil {
		killNetns(id)
	}
	killCgroupTree(p.CgroupRoot)
	_ = removeCgroupTree(p.CgroupRoot)
	_ = exec.Command("ip", "netns", "delete", p.Netns).Run()
	_ = unregister(p)
	if p.Dir != "" {
		if _, err := os.Stat(p.Path("created-var-lib-cni")); err == nil {
			_ = os.Remove("/var/lib/cni") // only if still empty
		}
	}
}

// SweepStale removes nodes whose supervisor is gone: a test binary killed
// outright leaves its namespace, cgroups, perhaps shims, and the machine's
// changed sysctls behind.
func SweepStale() {
	for ns, dir := range registeredIn(registryDir()) {
		if !supervisorAlive(dir) {
			cleanupNode(&Plan{Dir: dir, Netns: ns, CgroupRoot: ns})
		}
	}
	// Namespaces and cgroups of nodes that were never registered.
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "stash-node-") {
			continue
		}
		if _, ok := registeredIn(registryDir())[e.Name()]; ok {
			continue
		}
		if id, err := netnsID("/run/netns/" + e.Name()); err == nil && !supervised(id) {
			cleanupNode(&Plan{Netns: e.Name(), CgroupRoot: e.Name()})
		}
	}
	for _, h := range cgroupHierarchies() {
		ents, _ := os.ReadDir(h)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), "stash-node-") {
				if _, err := os.Stat("/run/netns/" + e.Name()); errors.Is(err, os.ErrNotExist) {
					killCgroupTree(e.Name())
					_ = removeCgroupTree(e.Name())
				}
			}
		}
	}
	_ = unregister(&Plan{Netns: "stash-node-none"}) // restores the sysctls if no node is left
}

// supervised reports whether a live supervisor runs in the namespace.
func supervised(id uint64) bool {
	for _, pid := range netnsPids(id) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(b), "supervise\x00-dir") {
			return true
		}
	}
	return false
}

func orEnv(v, env, def string) string {
	if v != "" {
		return v
	}
	if e := os.Getenv(env); e != "" {
		return e
	}
	return def
}

// Leftovers lists what the node left on the machine: none after Stop.
func (p *Plan) Leftovers() []string {
	var out []string
	if _, err := os.Stat("/run/netns/" + p.Netns); err == nil {
		out = append(out, "network namespace "+p.Netns)
	}
	for _, h := range cgroupHierarchies() {
		if _, err := os.Stat(filepath.Join(h, p.CgroupRoot)); err == nil {
			out = append(out, "cgroup "+filepath.Join(h, p.CgroupRoot))
		}
	}
	if _, err := os.Stat(filepath.Join(registryDir(), p.Netns)); err == nil {
		out = append(out, "registry entry "+p.Netns)
	}
	return out
}
