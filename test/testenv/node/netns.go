package node

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// createNetns makes the node's network namespace: a veth pair with both ends
// inside it (this kernel has no dummy links), the node's address on one end
// and a default route to an address nobody answers, so the kubelet finds a
// node IP and nothing routed out goes anywhere. The machine's own namespace
// is not changed.
func createNetns(ctx context.Context, p *Plan) error {
	ns := p.Netns
	prefix := strings.SplitN(p.NodeCIDR, "/", 2)[1]
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "node0", "type", "veth", "peer", "name", "node0-peer"},
		{"-n", ns, "addr", "add", p.NodeIP() + "/" + prefix, "dev", "node0"},
		{"-n", ns, "link", "set", "node0", "up"},
		{"-n", ns, "link", "set", "node0-peer", "up"},
		{"-n", ns, "route", "add", "default", "via", p.GatewayIP(), "dev", "node0"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, "ip", s...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// kernelSysctls are changed by the kubelet on the whole machine (they are
// not namespaced); Start saves them and the teardown restores them.
func kernelSysctls() []string {
	return []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}
}
