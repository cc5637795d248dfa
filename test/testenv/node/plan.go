// Package node starts a real single-node Kubernetes cluster for the tests:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
// with runc and the CNI plugins, a kubelet, kube-proxy and CoreDNS, all in a
// network namespace of their own and a private mount namespace, so nothing
// listens outside it and every mount, cgroup and rule goes with it.
//
// Start runs in the caller's namespaces: it checks the machine, creates the
// network namespace and hands a loopback listener to a supervisor
// (`stash-node supervise`), which enters the namespaces, starts the daemons
// as its children and forwards the listener to the API server. Stop, or the
// caller's death, makes the supervisor tear everything down in order.
package node

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// Plan is everything both sides agree on: paths, names and addresses. Start
// writes it as dir/plan.json; the supervisor reads it.
type Plan struct {
	Dir      string `json:"dir"`
	BinDir   string `json:"binDir"`
	Netns    string `json:"netns"`
	NodeName string `json:"nodeName"`
	// CgroupRoot is the kubelet's cgroupRoot in every v1 hierarchy: the
	// pods' cgroups live under it and leave with it.
	CgroupRoot string `json:"cgroupRoot"`
	Runc       string `json:"runc"`

	NodeCIDR    string `json:"nodeCIDR"`    // the veth's network; .1 is the node
	PodCIDR     string `json:"podCIDR"`     // the cni0 bridge; .1 is the gateway
	ServiceCIDR string `json:"serviceCIDR"` // ClusterIPs; .1 is kubernetes, .10 is DNS

	// Fixtures are extra servers (an S3 gateway, a Pushgateway) the
	// supervisor runs on the node's address after the cluster is up, and
	// stops before it.
	Fixtures []Fixture `json:"fixtures,omitempty"`
}

// NodeIPVar in a Fixture's Args becomes the node's address.
const NodeIPVar = "$(NODE_IP)"

// Fixture is a server run on the node. Env may hold test credentials, so
// plan.json is 0600.
type Fixture struct {
	Name string   `json:"name"`
	Bin  string   `json:"bin"`
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	// Port on the node's address that answers once the fixture is ready.
	Port int `json:"port"`
}

// Ports inside the node's network namespace; nothing else binds there.
const (
	APIServerPort = 6443
	EtcdPort      = 2379
	EtcdPeerPort  = 2380
	KubeletPort   = 10250
	DNSPort       = 53
	PauseImage    = "localhost/stash-test/pause:1"
	ClusterDomain = "cluster.local"
)

// NodeIP is the node's address, the first of NodeCIDR.
func (p *Plan) NodeIP() string { return nth(p.NodeCIDR, 1) }

// GatewayIP is the node's default gateway: on-link, never answering, so
// nothing routed out of the namespace goes anywhere.
func (p *Plan) GatewayIP() string { return nth(p.NodeCIDR, 254) }

// APIServiceIP is the `kubernetes` Service's ClusterIP.
func (p *Plan) APIServiceIP() string { return nth(p.ServiceCIDR, 1) }

// DNSServiceIP is the cluster DNS Service's ClusterIP.
func (p *Plan) DNSServiceIP() string { return nth(p.ServiceCIDR, 10) }

// nth returns the n-th address of a prefix.
func nth(cidr string, n int) string {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil {
		return ""
	}
	a := pfx.Masked().Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	return a.String()
}

// Path is a file or directory under the node's state directory.
func (p *Plan) Path(elem ...string) string {
	return filepath.Join(append([]string{p.Dir}, elem...)...)
}

// Bin is a tool in BinDir.
func (p *Plan) Bin(name string) string { return filepath.Join(p.BinDir, name) }

// ContainerdSocket is containerd's API socket, on the machine's filesystem so
// that ctr can reach it from outside the node's mount namespace too.
func (p *Plan) ContainerdSocket() string { return p.Path("run", "containerd.sock") }

func (p *Plan) write() error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(p.Path("plan.json"), b, 0o600)
}

// ReadPlan loads dir/plan.json.
func ReadPlan(dir string) (*Plan, error) {
	b, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err != nil {
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s/plan.json: %w", dir, err)
	}
	return &p, nil
}
