package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-stash/kubectl-stash/manifests"
	"github.com/kubectl-stash/kubectl-stash/pkg/apply"
	"github.com/kubectl-stash/kubectl-stash/pkg/catalog"
	"github.com/kubectl-stash/kubectl-stash/pkg/version"
)

// InstallOptions installs the CRDs and the Task/Function catalog.
type InstallOptions struct {
	factory *Factory
	streams genericiooptions.IOStreams
	flags   *ApplyFlags
	Image   string
	Timeout time.Duration

	clients *Clients
}

func newInstallCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &InstallOptions{factory: f, streams: streams, flags: newApplyFlags(), Timeout: time.Minute}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the Stash CRDs and the MySQL/MariaDB Task and Function catalog",
		Long: `Install applies the seven CRDs (Repository, BackupConfiguration, BackupSession, RestoreSession,
Task, Function, AppBinding) and the Task/Function catalog with server-side apply, then waits
until every CRD is Established. Running it again upgrades in place.`,
		Example: `  # Install into the current cluster
  kubectl stash install

  # Print what would be applied, for GitOps
  kubectl stash install --dry-run=client -o yaml`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	o.flags.AddFlags(cmd)
	cmd.Flags().StringVar(&o.Image, "image", version.AgentImage(), "agent image written into the catalog's Functions")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "how long to wait for the CRDs to become Established")
	return cmd
}

// Complete has nothing to fill in: install takes no arguments.
func (o *InstallOptions) Complete([]string) error { return nil }

// connect makes the clients unless this is a client dry run.
func (o *InstallOptions) connect() error {
	if o.flags.DryRun == DryRunClient {
		return nil
	}
	var err error
	o.clients, err = o.factory.Clients()
	if err == nil {
		o.clients.Applier.DryRunServer = o.flags.DryRun == DryRunServer
	}
	return err
}

// Validate checks flags.
func (o *InstallOptions) Validate() error {
	if o.Image == "" {
		return usageErr("--image must not be empty")
	}
	if o.Timeout <= 0 {
		return usageErr("--timeout must be positive")
	}
	return o.flags.Validate()
}

// InstallObjects returns the CRDs, then the catalog, in apply order.
func InstallObjects(image string) (crds []runtime.Object, cat []runtime.Object, err error) {
	list, err := manifests.CRDs()
	if err != nil {
		return nil, nil, err
	}
	for _, c := range list {
		c.Labels = map[string]string{"app.kubernetes.io/managed-by": apply.FieldManager}
		crds = append(crds, c)
	}
	c := catalog.New(image)
	for _, f := range c.SortedFunctions() {
		cat = append(cat, f)
	}
	for _, t := range c.SortedTasks() {
		cat = append(cat, t)
	}
	return crds, cat, nil
}

// Run applies.
func (o *InstallOptions) Run(ctx context.Context) error {
	crds, cat, err := InstallObjects(o.Image)
	if err != nil {
		return err
	}
	if o.flags.DryRun == DryRunClient {
		return o.flags.Emit(nil, o.streams.Out, nil, append(crds, cat...))
	}
	if err := o.connect(); err != nil {
		return err
	}
	ap := func(objs []runtime.Object) ([]apply.Result, error) { return o.clients.Applier.Apply(ctx, objs...) }
	if err := o.flags.Emit(nil, o.streams.Out, ap, crds); err != nil {
		return err
	}
	if o.flags.DryRun == DryRunServer {
		// The catalog's kinds do not exist until the CRDs do.
		return nil
	}
	if err := WaitEstablished(ctx, o.clients, crds, o.Timeout); err != nil {
		return err
	}
	o.clients.Applier.Reset()
	return o.flags.Emit(nil, o.streams.Out, ap, cat)
}

// WaitEstablished waits until every CRD reports Established, or timeout.
func WaitEstablished(ctx context.Context, c *Clients, crds []runtime.Object, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, obj := range crds {
		name := obj.(*apiextensionsv1.CustomResourceDefinition).Name
		for {
			crd, err := c.APIExt.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err == nil && established(crd) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s is not Established after %s (last error: %v): check `kubectl get crd %s -o yaml` for its conditions", name, timeout, err, name)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
