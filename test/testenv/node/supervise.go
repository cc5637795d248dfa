package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// daemon is one started node process.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// supervisor owns the daemons of one node. It runs inside the node's
// network namespace and a private mount namespace.
type supervisor struct {
	plan    *Plan
	log     *slog.Logger
	mu      sync.Mutex
	daemons []*daemon
}

// Supervise runs the node until ctx ends, then tears it down. api is the
// listener, in the caller's namespace, forwarded to the API server. It
// writes dir/ready (or dir/failed with the cause) once the node is usable.
func Supervise(ctx context.Context, dir string, api net.Listener, logw io.Writer) error {
	p, err := ReadPlan(dir)
	if err != nil {
		return err
	}
	s := &supervisor{plan: p, log: slog.New(slog.NewTextHandler(logw, nil))}
	defer s.teardown()
	if err := s.up(ctx); err != nil {
		_ = os.WriteFile(p.Path("failed"), []byte(err.Error()), 0o600)
		return err
	}
	go s.forward(ctx, api)
	if err := os.WriteFile(p.Path("ready"), []byte(time.Now().Format(time.RFC3339Nano)), 0o600); err != nil {
		return err
	}
	s.log.Info("node ready")
	select {
	case <-ctx.Done():
	case d := <-s.firstExit():
		err = fmt.Errorf("%s exited: %s", d.name, lastLines(p.Path("logs", d.name+".log"), 20))
		_ = os.WriteFile(p.Path("failed"), []byte(err.Error()), 0o600)
		return err
	}
	return nil
}

// up starts the daemons in dependency order, each once the one before answers.
func (s *supervisor) up(ctx context.Context) error {
	p := s.plan
	if err := s.mounts(); err != nil {
		return fmt.Errorf("node mounts: %w", err)
	}
	if err := s.netSysctls(); err != nil {
		return err
	}
	if err := s.cgroups(); err != nil {
		return err
	}
	ip := p.NodeIP()
	pki := func(f string) string { return p.Path("pki", f) }
	if err := s.start(ctx, "etcd", []string{
		"--name=node", "--data-dir=" + p.Path("etcd"),
		"--listen-client-urls=http://127.0.0.1:" + strconv.Itoa(EtcdPort),
		"--advertise-client-urls=http://127.0.0.1:" + strconv.Itoa(EtcdPort),
		"--listen-peer-urls=http://127.0.0.1:" + strconv.Itoa(EtcdPeerPort),
		"--initial-advertise-peer-urls=http://127.0.0.1:" + strconv.Itoa(EtcdPeerPort),
		"--initial-cluster=node=http://127.0.0.1:" + strconv.Itoa(EtcdPeerPort),
		"--unsafe-no-fsync=true", "--log-level=warn",
	}, httpReady("http://127.0.0.1:"+strconv.Itoa(EtcdPort)+"/health")); err != nil {
		return err
	}
	cs, err := s.client()
	if err != nil {
		return err
	}
	apiReady := func(ctx context.Context) error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}
	if err := s.start(ctx, "kube-apiserver", []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(EtcdPort),
		"--bind-address=0.0.0.0", "--advertise-address=" + ip, "--secure-port=" + strconv.Itoa(APIServerPort),
		"--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + pki("ca.crt"),
		"--kubelet-client-certificate=" + pki("kubelet-client.crt"), "--kubelet-client-key=" + pki("kubelet-client.key"),
		"--kubelet-certificate-authority=" + pki("ca.crt"), "--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc." + ClusterDomain,
		"--service-account-key-file=" + pki("sa.pub"), "--service-account-signing-key-file=" + pki("sa.key"),
		"--service-cluster-ip-range=" + p.ServiceCIDR, "--allow-privileged=false",
		"--profiling=false", "--v=1",
	}, apiReady); err != nil {
		return err
	}
	none := func(context.Context) error { return nil }
	if err := s.start(ctx, "kube-controller-manager", []string{
		"--kubeconfig=" + pki("controller-manager.kubeconfig"), "--controllers=*",
		"--use-service-account-credentials", "--service-account-private-key-file=" + pki("sa.key"),
		"--root-ca-file=" + pki("ca.crt"), "--leader-elect=false", "--bind-address=127.0.0.1",
		"--service-cluster-ip-range=" + p.ServiceCIDR, "--profiling=false", "--v=1",
	}, none); err != nil {
		return err
	}
	if err := s.start(ctx, "kube-scheduler", []string{
		"--kubeconfig=" + pki("scheduler.kubeconfig"), "--leader-elect=false",
		"--bind-address=127.0.0.1", "--profiling=false", "--v=1",
	}, none); err != nil {
		return err
	}
	if err := s.start(ctx, "containerd", []string{"--config=" + p.Path("containerd.toml")}, s.containerdReady); err != nil {
		return err
	}
	if err := s.importImage(ctx, p.Path("images", "pause.tar")); err != nil {
		return err
	}
	if err := s.start(ctx, "kubelet", []string{
		"--config=" + p.Path("kubelet.yaml"), "--kubeconfig=" + pki("kubelet.kubeconfig"),
		"--root-dir=" + p.Path("kubelet"), "--hostname-override=" + p.NodeName, "--node-ip=" + ip, "--v=1",
	}, func(ctx context.Context) error { return nodeReady(ctx, cs, p.NodeName) }); err != nil {
		return err
	}
	if err := s.start(ctx, "kube-proxy", []string{"--config=" + p.Path("kube-proxy.yaml"), "--v=1"},
		httpReady("http://127.0.0.1:10256/healthz")); err != nil {
		return err
	}
	if err := s.dnsService(ctx, cs); err != nil {
		return err
	}
	if err := s.start(ctx, "coredns", []string{"-conf=" + p.Path("Corefile")}, httpReady("http://127.0.0.1:18181/ready")); err != nil {
		return err
	}
	for _, f := range p.Fixtures {
		if err := s.startFixture(ctx, f); err != nil {
			return err
		}
	}
	// Pods can be created once the controller manager made the default ServiceAccount.
	return poll(ctx, 60*time.Second, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// mounts hides the paths the daemons hard-code behind the node's own:
// a tmpfs over /run (shim sockets, xtables lock) and over /var/log
// (/var/log/containers), and the CNI cache in the state directory.
func (s *supervisor) mounts() error {
	for _, m := range []string{"/run", "/var/log"} {
		if err := syscall.Mount("tmpfs", m, "tmpfs", 0, "mode=755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", m, err)
		}
	}
	if err := os.MkdirAll(s.plan.Path("cni", "cache"), 0o700); err != nil {
		return err
	}
	// libcni's cache directory is fixed; an empty mount point is made when
	// the machine has none, and removed again by cleanupNode.
	if _, err := os.Stat("/var/lib/cni"); os.IsNotExist(err) {
		if err := os.Mkdir("/var/lib/cni", 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(s.plan.Path("created-var-lib-cni"), nil, 0o600); err != nil {
			return err
		}
	}
	if err := syscall.Mount(s.plan.Path("cni", "cache"), "/var/lib/cni", "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on /var/lib/cni: %w", s.plan.Path("cni", "cache"), err)
	}
	return nil
}

// netSysctls are the namespace's own: forwarding for the bridge, and bridged
// traffic through iptables, so a Pod reaches another Pod through a Service.
func (s *supervisor) netSysctls() error {
	for k, v := range map[string]string{
		"net/ipv4/ip_forward":                 "1",
		"net/bridge/bridge-nf-call-iptables":  "1",
		"net/bridge/bridge-nf-call-ip6tables": "1",
	} {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s in the node's network namespace: %w", k, err)
		}
	}
	return nil
}

// cgroups creates the kubelet's cgroup root in every v1 hierarchy.
func (s *supervisor) cgroups() error {
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, s.plan.CgroupRoot)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		if filepath.Base(h) == "cpuset" {
			// A cpuset cgroup takes no task until it has CPUs and memory nodes.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("%s/%s: %w", dir, f, err)
				}
			}
		}
	}
	return nil
}

// startFixture runs a fixture server and waits for its port.
func (s *supervisor) startFixture(ctx context.Context, f Fixture) error {
	addr := net.JoinHostPort(s.plan.NodeIP(), strconv.Itoa(f.Port))
	args := make([]string, len(f.Args))
	for i, a := range f.Args {
		args[i] = strings.ReplaceAll(a, NodeIPVar, s.plan.NodeIP())
	}
	return s.run(ctx, f.Name, f.Bin, args, f.Env, func(ctx context.Context) error {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// start runs a node daemon from BinDir and waits until ready succeeds.
func (s *supervisor) start(ctx context.Context, name string, args []string, ready func(context.Context) error) error {
	return s.run(ctx, name, s.plan.Bin(name), args, nil, ready)
}

func (s *supervisor) run(ctx context.Context, name, bin string, args, env []string, ready func(context.Context) error) error {
	logf, err := os.OpenFile(s.plan.Path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), "PATH="+s.plan.BinDir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(d.done) }()
	s.mu.Lock()
	s.daemons = append(s.daemons, d)
	s.mu.Unlock()
	err = poll(ctx, 90*time.Second, func(ctx context.Context) error {
		select {
		case <-d.done:
			return errExited
		default:
		}
		return ready(ctx)
	})
	if err != nil {
		return fmt.Errorf("%s did not become ready: %w; its log %s ends:\n%s", name, err, s.plan.Path("logs", name+".log"),
			lastLines(s.plan.Path("logs", name+".log"), 15))
	}
	s.log.Info("started", "daemon", name, "pid", cmd.Process.Pid, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

var errExited = errors.New("exited")

// firstExit reports the first daemon that ends by itself.
func (s *supervisor) firstExit() <-chan *daemon {
	out := make(chan *daemon, 1)
	s.mu.Lock()
	ds := append([]*daemon(nil), s.daemons...)
	s.mu.Unlock()
	for _, d := range ds {
		go func() {
			<-d.done
			select {
			case out <- d:
			default:
			}
		}()
	}
	return out
}

func (s *supervisor) client() (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", s.plan.Path("pki", "admin.kubeconfig"))
	if err != nil {
		return nil, err
	}
	rc.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(rc)
}

func (s *supervisor) containerdReady(ctx context.Context) error {
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", s.plan.ContainerdSocket())
	if err != nil {
		return err
	}
	return c.Close()
}

// importImage imports an OCI archive into containerd's CRI namespace.
func (s *supervisor) importImage(ctx context.Context, archive string) error {
	out, err := exec.CommandContext(ctx, s.plan.Bin("ctr"), "--address", s.plan.ContainerdSocket(),
		"-n", "k8s.io", "images", "import", "--no-unpack=false", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("import %s into containerd: %w: %s", archive, err, out)
	}
	return nil
}

// dnsService points the cluster DNS Service at CoreDNS on the node's address.
func (s *supervisor) dnsService(ctx context.Context, cs kubernetes.Interface) error {
	ip := s.plan.NodeIP()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: s.plan.DNSServiceIP(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: DNSPort, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(DNSPort)},
				{Name: "dns-tcp", Port: DNSPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(DNSPort)},
			},
		},
	}
	if _, err := cs.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube-dns Service: %w", err)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-node", Namespace: "kube-system", Labels: map[string]string{
			discoveryv1.LabelServiceName: "kube-dns", discoveryv1.LabelManagedBy: "stash-node"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("dns"), Port: ptr.To[int32](DNSPort), Protocol: ptr.To(corev1.ProtocolUDP)},
			{Name: ptr.To("dns-tcp"), Port: ptr.To[int32](DNSPort), Protocol: ptr.To(corev1.ProtocolTCP)},
		},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("kube-system").Create(ctx, es, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube-dns EndpointSlice: %w", err)
	}
	return nil
}

// forward copies each connection on the caller's listener to the API server.
func (s *supervisor) forward(ctx context.Context, l net.Listener) {
	go func() { <-ctx.Done(); l.Close() }()
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(APIServerPort))
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", target)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
			<-done
		}()
	}
}

// teardown stops the daemons newest first, one at a time: all at once left
// the API server hanging on a dead etcd. The Pods' processes go before
// containerd, the shims after it, then the cgroups, then the sysctls.
func (s *supervisor) teardown() {
	s.mu.Lock()
	ds := append([]*daemon(nil), s.daemons...)
	s.mu.Unlock()
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		if d.name == "containerd" {
			killCgroupTree(s.plan.CgroupRoot)
		}
		stopDaemon(d, 10*time.Second)
		if d.name == "containerd" {
			killNetnsPeers()
		}
	}
	killCgroupTree(s.plan.CgroupRoot)
	killNetnsPeers()
	if err := removeCgroupTree(s.plan.CgroupRoot); err != nil {
		s.log.Warn("cgroups left", "err", err)
	}
	if err := unregister(s.plan); err != nil {
		s.log.Warn("restore the machine's sysctls", "err", err)
	}
}

func stopDaemon(d *daemon, grace time.Duration) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

func nodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not ready: %s", name, c.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", name)
}

func httpReady(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// poll calls f every 100ms until it succeeds, returns errExited, or timeout.
func poll(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		if last = f(ctx); last == nil || errors.Is(last, errExited) {
			return last
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, last)
		case <-t.C:
		}
	}
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
