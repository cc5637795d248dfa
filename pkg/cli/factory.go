package cli

import (
	"fmt"

	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-stash/kubectl-stash/pkg/apply"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/version"
)

// Factory builds clients from the kubectl flags.
type Factory struct {
	ConfigFlags *genericclioptions.ConfigFlags
}

// Clients are what commands talk to the API with.
type Clients struct {
	Config    *rest.Config
	Kube      kubernetes.Interface
	Stash     *client.Stash
	APIExt    apiextclient.Interface
	Applier   *apply.Applier
	Namespace string
}

// Namespace is the -n namespace, or the kubeconfig's.
func (f *Factory) Namespace() (string, error) {
	ns, _, err := f.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("read namespace from kubeconfig: %w", err)
	}
	return ns, nil
}

// Clients connects.
func (f *Factory) Clients() (*Clients, error) {
	cfg, err := f.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (set --kubeconfig or KUBECONFIG)", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "kubectl-stash/" + version.Version
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	c := &Clients{Config: cfg}
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if c.Stash, err = client.NewStash(cfg); err != nil {
		return nil, err
	}
	if c.APIExt, err = apiextclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.Applier = apply.New(dyn, c.Kube.Discovery())
	if c.Namespace, err = f.Namespace(); err != nil {
		return nil, err
	}
	return c, nil
}
