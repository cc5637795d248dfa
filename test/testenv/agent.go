package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// AgentProcess is an agent run from its rendered Deployment.
type AgentProcess struct {
	*Process
	Listen  string // host:port of /metrics, /healthz, /readyz
	Scratch string
}

// AgentOptions locate the rendered Deployment and the binaries.
type AgentOptions struct {
	Namespace  string
	Deployment string
	// BinDir holds the stash-agent binary named by the container's command.
	BinDir string
	// Path is the PATH the agent sees (restic, mysqldump).
	Path string
	// Dir gets the agent's log, kubeconfig and scratch directory.
	Dir string
}

// StartAgent runs the agent with exactly the command, args and env of the
// container in the rendered Deployment, authenticated with a TokenRequest
// token for the Deployment's ServiceAccount. No kubelet runs here, so its
// part is emulated: fieldRef env is resolved, the scratch emptyDir becomes a
// local directory, and the pod's port becomes a free loopback port.
func (cp *ControlPlane) StartAgent(ctx context.Context, o AgentOptions) (*AgentProcess, error) {
	cs, err := kubernetes.NewForConfig(cp.Admin)
	if err != nil {
		return nil, err
	}
	dep, err := cs.AppsV1().Deployments(o.Namespace).Get(ctx, o.Deployment, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("rendered Deployment %s/%s: %w", o.Namespace, o.Deployment, err)
	}
	pod := dep.Spec.Template.Spec
	ctr := pod.Containers[0]
	tok, err := cs.CoreV1().ServiceAccounts(o.Namespace).CreateToken(ctx, pod.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](7200)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for ServiceAccount %s/%s: %w", o.Namespace, pod.ServiceAccountName, err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: cp.CA.CertPEM}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa", Namespace: o.Namespace}
	kc.CurrentContext = "c"
	kcPath := filepath.Join(o.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kcPath); err != nil {
		return nil, err
	}
	scratch := filepath.Join(o.Dir, "scratch")
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	listen := hostPort(port)
	var scratchMount string
	for _, m := range ctr.VolumeMounts {
		if m.Name == "scratch" {
			scratchMount = m.MountPath
		}
	}
	subst := func(s string) string {
		if scratchMount != "" {
			s = strings.ReplaceAll(s, scratchMount, scratch)
		}
		return s
	}
	env := []string{"PATH=" + o.Path, "KUBECONFIG=" + kcPath}
	for _, e := range ctr.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.namespace":
				v = o.Namespace
			case "metadata.name":
				v = o.Deployment + "-local"
			}
		}
		env = append(env, e.Name+"="+subst(v))
	}
	var args []string
	for _, a := range ctr.Args {
		a = subst(a)
		for _, p := range ctr.Ports {
			a = strings.ReplaceAll(a, fmt.Sprintf("--listen=:%d", p.ContainerPort), "--listen="+listen)
		}
		args = append(args, a)
	}
	bin := filepath.Join(o.BinDir, filepath.Base(ctr.Command[0]))
	// The environment is exactly the container's plus PATH and KUBECONFIG.
	p, err := startWithEnv(o.Dir, "agent", bin, append(ctr.Command[1:], args...), env)
	if err != nil {
		return nil, err
	}
	return &AgentProcess{Process: p, Listen: listen, Scratch: scratch}, nil
}
