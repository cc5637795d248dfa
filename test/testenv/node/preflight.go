package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrCannotRun marks a machine that cannot run the node; the message says
// what is missing and how to fix it.
var ErrCannotRun = errors.New("this machine cannot run the real node")

// Preflight checks, in well under a second, what the node needs from the
// machine, so a missing piece is a clear error and not a test timeout.
func Preflight(o Options) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if os.Geteuid() != 0 {
		fail("it must run as root (network and mount namespaces, cgroups)")
	}
	if _, err := os.Stat(o.Runc); err != nil {
		fail("no runc at %s: run `hack/install-node-deps.sh` (Debian package runc)", o.Runc)
	}
	for _, t := range []string{"ip", "nsenter", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(t); err != nil {
			fail("no %s on PATH: run `hack/install-node-deps.sh`", t)
		}
	}
	for _, t := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
		"containerd", "containerd-shim-runc-v2", "ctr", "bridge", "host-local", "loopback", "portmap", "coredns"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, t)); err != nil {
			fail("no %s in %s: run `make tools`", t, o.BinDir)
		}
	}
	if _, err := os.Stat(o.Supervisor); err != nil {
		fail("no node supervisor at %s: run `make build`", o.Supervisor)
	}
	have := map[string]bool{}
	for _, h := range hierarchiesIn(o.CgroupFS) {
		have[filepath.Base(h)] = true
	}
	for _, c := range []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids"} {
		if !have[c] {
			fail("the cgroup v1 controller %s is not mounted under %s: the kubelet needs it (mount it, or run on a machine with cgroup v1 controllers)", c, o.CgroupFS)
		}
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		fail("the kernel has no bridge netfilter (/proc/sys/net/bridge): Pods could not reach each other through Services; load br_netfilter")
	}
	if err := checkRanges(o); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrCannotRun, errors.Join(errs...))
	}
	return nil
}

// checkRanges refuses ranges that overlap each other or an address this
// machine already uses: inside the node that address would be unreachable.
func checkRanges(o Options) error {
	named := map[string]string{"node": o.NodeCIDR, "pod": o.PodCIDR, "service": o.ServiceCIDR}
	pfx := map[string]netip.Prefix{}
	for n, c := range named {
		p, err := netip.ParsePrefix(c)
		if err != nil || !p.Addr().Is4() || p.Bits() > 28 {
			return fmt.Errorf("the %s range %q is not an IPv4 CIDR of at least 16 addresses", n, c)
		}
		pfx[n] = p.Masked()
	}
	for _, a := range []string{"node", "pod", "service"} {
		for _, b := range []string{"node", "pod", "service"} {
			if a < b && pfx[a].Overlaps(pfx[b]) {
				return fmt.Errorf("the %s range %s overlaps the %s range %s: choose ranges apart", a, pfx[a], b, pfx[b])
			}
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, ad := range addrs {
		ipn, ok := ad.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP.To4())
		if !ok {
			continue
		}
		for n, p := range pfx {
			if p.Contains(ip) {
				return fmt.Errorf("the %s range %s is taken: this machine has the address %s in it; set STASH_NODE_%s_CIDR to a free private range", n, p, ip, upper(n))
			}
		}
	}
	return nil
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}
