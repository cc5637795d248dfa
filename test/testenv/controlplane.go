package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ControlPlane is etcd plus kube-apiserver with TLS, RBAC and
// ServiceAccount token signing.
type ControlPlane struct {
	Etcd       *Process
	APIServer  *Process
	URL        string
	EtcdURL    string // plain HTTP on loopback: its /metrics too
	CA         *CA
	Kubeconfig string // admin kubeconfig (system:masters)
	Admin      *rest.Config
}

func startControlPlane(ctx context.Context, dir, binDir string, detach bool) (*ControlPlane, error) {
	etcdBin, err := lookBin(binDir, "etcd")
	if err != nil {
		return nil, err
	}
	apiBin, err := lookBin(binDir, "kube-apiserver")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{}

	clientPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	etcdURL := "http://" + hostPort(clientPort)
	cp.EtcdURL = etcdURL
	peerURL := "http://" + hostPort(peerPort)
	cp.Etcd, err = start(dir, "etcd", etcdBin, []string{
		"--name=default",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, nil, detach)
	if err != nil {
		return nil, err
	}
	if err := cp.Etcd.waitReady(ctx, 60*time.Second, httpOK(http.DefaultClient, etcdURL+"/health")); err != nil {
		cp.Stop()
		return nil, err
	}

	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		cp.Stop()
		return nil, err
	}
	if cp.CA, err = NewCA("kubectl-stash-test-ca"); err != nil {
		cp.Stop()
		return nil, err
	}
	srvCert, srvKey, err := cp.CA.Issue("kube-apiserver", nil, []string{"127.0.0.1", "localhost", "kubernetes.default.svc"}, false)
	if err != nil {
		cp.Stop()
		return nil, err
	}
	admCert, admKey, err := cp.CA.Issue("admin", []string{"system:masters"}, nil, true)
	if err != nil {
		cp.Stop()
		return nil, err
	}
	saKey, saPub, err := RSAKeyPair()
	if err != nil {
		cp.Stop()
		return nil, err
	}
	files := map[string][]byte{"ca.crt": cp.CA.CertPEM, "apiserver.crt": srvCert, "apiserver.key": srvKey, "sa.key": saKey, "sa.pub": saPub}
	for n, b := range files {
		if err := writeFile(filepath.Join(pki, n), b); err != nil {
			cp.Stop()
			return nil, err
		}
	}

	port, err := FreePort()
	if err != nil {
		cp.Stop()
		return nil, err
	}
	cp.URL = "https://" + hostPort(port)
	cp.APIServer, err = start(dir, "kube-apiserver", apiBin, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=false",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}, nil, detach)
	if err != nil {
		cp.Stop()
		return nil, err
	}

	cp.Admin = &rest.Config{
		Host:            cp.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CA.CertPEM, CertData: admCert, KeyData: admKey},
		QPS:             100,
		Burst:           200,
	}
	cs, err := kubernetes.NewForConfig(cp.Admin)
	if err != nil {
		cp.Stop()
		return nil, err
	}
	ready := func(ctx context.Context) error {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		// RBAC bootstrap roles must exist before tests create bindings.
		_, err = cs.RbacV1().ClusterRoles().Get(ctx, "cluster-admin", metav1.GetOptions{})
		return err
	}
	if err := cp.APIServer.waitReady(ctx, 120*time.Second, ready); err != nil {
		cp.Stop()
		return nil, err
	}

	cp.Kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["stash-test"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: cp.CA.CertPEM}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: admCert, ClientKeyData: admKey}
	kc.Contexts["stash-test"] = &clientcmdapi.Context{Cluster: "stash-test", AuthInfo: "admin", Namespace: "default"}
	kc.CurrentContext = "stash-test"
	if err := clientcmd.WriteToFile(*kc, cp.Kubeconfig); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

// Stop stops kube-apiserver, then etcd.
func (cp *ControlPlane) Stop() {
	if cp == nil {
		return
	}
	cp.APIServer.Stop(10 * time.Second)
	cp.Etcd.Stop(10 * time.Second)
}

// RestartAPIServer stops kube-apiserver and starts it again with the same
// arguments, for fault tests.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context, down time.Duration) error {
	args := cp.APIServer.cmd.Args[1:]
	bin := cp.APIServer.cmd.Path
	dir := filepath.Dir(cp.APIServer.LogPath)
	cp.APIServer.Stop(10 * time.Second)
	time.Sleep(down)
	p, err := start(dir, "kube-apiserver", bin, args, nil, false)
	if err != nil {
		return err
	}
	cp.APIServer = p
	cs, err := kubernetes.NewForConfig(cp.Admin)
	if err != nil {
		return err
	}
	return p.waitReady(ctx, 120*time.Second, func(ctx context.Context) error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

func httpOK(c *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
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
