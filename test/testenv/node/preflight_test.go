package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// A machine that cannot run the node is told so at once, with the cause and
// the fix, never as a timeout.
func TestStartFailsFastWithTheCause(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the node needs root")
	}
	bin := filepath.Join(testenv.RepoRoot(), "bin")
	good := Options{BinDir: bin, Supervisor: filepath.Join(bin, "stash-node"), Runc: "/usr/sbin/runc", CgroupFS: cgroupFS,
		NodeCIDR: DefaultNodeCIDR, PodCIDR: DefaultPodCIDR, ServiceCIDR: DefaultServiceCIDR}
	empty := t.TempDir()
	cases := []struct {
		name string
		edit func(*Options)
		want []string
	}{
		{"no runc", func(o *Options) { o.Runc = filepath.Join(empty, "runc") }, []string{"no runc at", "hack/install-node-deps.sh"}},
		{"no tools", func(o *Options) { o.BinDir = empty }, []string{"no kubelet in " + empty, "make tools"}},
		{"no cgroup controllers", func(o *Options) { o.CgroupFS = empty }, []string{"cgroup v1 controller memory is not mounted under " + empty}},
		{"ranges overlap", func(o *Options) { o.PodCIDR = "10.250.0.0/25" }, []string{"overlaps", "choose ranges apart"}},
		{"range taken", func(o *Options) { o.ServiceCIDR = "127.0.0.0/24" }, []string{"the service range 127.0.0.0/24 is taken", "127.0.0.1", "STASH_NODE_SERVICE_CIDR"}},
		{"not a range", func(o *Options) { o.NodeCIDR = "10.250.0.1" }, []string{`the node range "10.250.0.1" is not an IPv4 CIDR`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := good
			c.edit(&o)
			o.Dir = t.TempDir()
			began := time.Now()
			n, err := Start(context.Background(), o)
			took := time.Since(began)
			if err == nil {
				n.Stop()
				t.Fatal("the node started")
			}
			if !errors.Is(err, ErrCannotRun) {
				t.Errorf("error is not ErrCannotRun: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if took > 5*time.Second {
				t.Errorf("took %s to refuse", took)
			}
			if _, err := os.Stat(filepath.Join(o.Dir, "plan.json")); err == nil {
				t.Error("a refused node left state behind")
			}
		})
	}
}
