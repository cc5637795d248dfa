package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// identity is one client certificate and the kubeconfig made from it.
type identity struct {
	file string // kubeconfig name under pki/
	cn   string
	orgs []string
}

// identities are the daemons' users; each is bound by the bootstrap RBAC.
func identities(nodeName string) []identity {
	return []identity{
		{"admin.kubeconfig", "admin", []string{"system:masters"}},
		{"controller-manager.kubeconfig", "system:kube-controller-manager", nil},
		{"scheduler.kubeconfig", "system:kube-scheduler", nil},
		{"kube-proxy.kubeconfig", "system:kube-proxy", nil},
		{"kubelet.kubeconfig", "system:node:" + nodeName, []string{"system:nodes"}},
		// CoreDNS reads Services and EndpointSlices; a test fixture, not a
		// user-facing part, so it shares the admin's group.
		{"coredns.kubeconfig", "coredns", []string{"system:masters"}},
	}
}

// writeConfig writes the PKI, the kubeconfigs and every daemon's
// configuration under the state directory.
func (p *Plan) writeConfig() error {
	pki := p.Path("pki")
	for _, d := range []string{pki, p.Path("cni", "net.d"), p.Path("cni", "bin"), p.Path("run"), p.Path("logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	ca, err := testenv.NewCA("stash-node-ca")
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.crt": ca.CertPEM}
	ip := p.NodeIP()
	srvCert, srvKey, err := ca.Issue("kube-apiserver", nil, []string{
		"127.0.0.1", "localhost", ip, p.APIServiceIP(),
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + ClusterDomain,
	}, false)
	if err != nil {
		return err
	}
	files["apiserver.crt"], files["apiserver.key"] = srvCert, srvKey
	if files["kubelet-client.crt"], files["kubelet-client.key"], err = ca.Issue("kube-apiserver-kubelet-client", []string{"system:masters"}, nil, true); err != nil {
		return err
	}
	if files["kubelet.crt"], files["kubelet.key"], err = ca.Issue(p.NodeName, nil, []string{ip, p.NodeName}, false); err != nil {
		return err
	}
	if files["sa.key"], files["sa.pub"], err = testenv.RSAKeyPair(); err != nil {
		return err
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(pki, n), b, 0o600); err != nil {
			return err
		}
	}
	for _, id := range identities(p.NodeName) {
		cert, key, err := ca.Issue(id.cn, id.orgs, nil, true)
		if err != nil {
			return err
		}
		// Daemons inside the namespace use the API server's own address.
		if err := writeKubeconfig(filepath.Join(pki, id.file), "https://"+ip+":6443", ca.CertPEM, cert, key); err != nil {
			return err
		}
	}
	for name, body := range map[string]string{
		"containerd.toml":                  p.containerdConfig(),
		"kubelet.yaml":                     p.kubeletConfig(),
		"kube-proxy.yaml":                  p.kubeProxyConfig(),
		"Corefile":                         p.corefile(),
		"cni/net.d/10-stash-node.conflist": p.cniConfig(),
	} {
		if err := os.WriteFile(p.Path(name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	// containerd finds the plugins by directory.
	for _, plugin := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if err := os.Symlink(p.Bin(plugin), p.Path("cni", "bin", plugin)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}

func writeKubeconfig(path, server string, caPEM, cert, key []byte) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["node"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	kc.Contexts["node"] = &clientcmdapi.Context{Cluster: "node", AuthInfo: "user", Namespace: "default"}
	kc.CurrentContext = "node"
	return clientcmd.WriteToFile(*kc, path)
}

// containerdConfig: runc from Debian with cgroupfs, the pause image pinned
// and never pulled (there is no registry), and the OOM score left alone,
// since this machine cannot lower it (runc fails every sandbox otherwise).
func (p *Plan) containerdConfig() string {
	return fmt.Sprintf(`version = 3
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %q
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%q]
    conf_dir = %q
    max_conf_num = 1

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  disable_snapshot_annotations = true
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %q

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, p.Path("containerd", "root"), p.Path("containerd", "state"),
		p.ContainerdSocket(), p.Path("run", "containerd-ttrpc.sock"), p.Runc,
		p.Path("cni", "bin"), p.Path("cni", "net.d"), PauseImage, p.Path("containerd", "opt"))
}

// kubeletConfig: cgroupfs (PID 1 is not systemd), cgroup v1 allowed, its
// own cgroup root, no resolv.conf from the machine, and no eviction or
// image garbage collection that would remove the imported images.
func (p *Plan) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %q
containerRuntimeEndpoint: unix://%s
address: %q
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization:
  mode: Webhook
tlsCertFile: %q
tlsPrivateKeyFile: %q
clusterDNS: [%q]
clusterDomain: %s
resolvConf: ""
podLogsDir: %q
failSwapOn: false
evictionHard:
  memory.available: "1%%"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
fileCheckFrequency: 0s
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
`, "/"+p.CgroupRoot, p.ContainerdSocket(), p.NodeIP(), KubeletPort,
		p.Path("pki", "ca.crt"), p.Path("pki", "kubelet.crt"), p.Path("pki", "kubelet.key"),
		p.DNSServiceIP(), ClusterDomain, p.Path("kubelet", "pod-logs"))
}

// kubeProxyConfig: iptables inside the namespace, and no conntrack tuning,
// which would change the machine's global settings.
func (p *Plan) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
mode: iptables
hostnameOverride: %q
clusterCIDR: %q
bindAddress: %q
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, p.Path("pki", "kube-proxy.kubeconfig"), p.NodeName, p.PodCIDR, p.NodeIP())
}

// corefile serves the cluster's names only: nothing is forwarded, since no
// traffic leaves the namespace.
func (p *Plan) corefile() string {
	return fmt.Sprintf(`.:%d {
    bind %s
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes %s in-addr.arpa ip6.arpa {
        kubeconfig %s node
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`, DNSPort, p.NodeIP(), ClusterDomain, p.Path("pki", "coredns.kubeconfig"))
}

// cniConfig puts Pods on the cni0 bridge without masquerade: the node's
// fixtures see the Pods' own addresses.
func (p *Plan) cniConfig() string {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "stash-node",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": p.PodCIDR, "gateway": nth(p.PodCIDR, 1)}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": p.Path("cni", "ipam"),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, _ := json.MarshalIndent(conf, "", "  ")
	return string(b)
}
