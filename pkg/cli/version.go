package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/version"
)

// VersionOptions prints versions.
type VersionOptions struct {
	factory *Factory
	streams genericiooptions.IOStreams
	Client  bool
}

func newVersionCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &VersionOptions{factory: f, streams: streams}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and the versions of the agents in the namespace",
		Example: `  kubectl stash version
  kubectl stash version --client   # no cluster access`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	cmd.Flags().BoolVar(&o.Client, "client", false, "print only the plugin's version")
	return cmd
}

// Complete has nothing to fill in: version takes no arguments.
func (o *VersionOptions) Complete([]string) error { return nil }

// Validate has nothing to check.
func (o *VersionOptions) Validate() error { return nil }

// Run prints.
func (o *VersionOptions) Run(ctx context.Context) error {
	fmt.Fprintf(o.streams.Out, "Client Version: %s (commit %s)\n", version.Version, version.Commit)
	if o.Client {
		return nil
	}
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	sv, err := c.Kube.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("reach the API server: %w", err)
	}
	fmt.Fprintf(o.streams.Out, "Server Version: %s\n", sv.GitVersion)
	deps, err := c.Kube.AppsV1().Deployments(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: contract.AgentSelectorString()})
	if err != nil {
		return fmt.Errorf("list agents in namespace %s: %w", c.Namespace, err)
	}
	if len(deps.Items) == 0 {
		fmt.Fprintf(o.streams.Out, "Agents: none in namespace %s\n", c.Namespace)
		return nil
	}
	t := &table{}
	for _, c := range []string{"Agent", "Version", "Image"} {
		t.column(c, 0)
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		img := ""
		if len(d.Spec.Template.Spec.Containers) > 0 {
			img = d.Spec.Template.Spec.Containers[0].Image
		}
		t.row(d.Name, d.Labels[contract.LabelVersion], img)
	}
	return t.print(o.streams.Out, false)
}

func objName(o runtime.Object) string {
	m, err := meta.Accessor(o)
	if err != nil {
		return ""
	}
	return m.GetName()
}
