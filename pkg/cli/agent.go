package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/render"
	"github.com/kubectl-stash/kubectl-stash/pkg/version"
)

// agentFlags are the flags of every command that renders an agent.
type agentFlags struct {
	Image       string
	Pushgateway string
	Replicas    int32
}

func (f *agentFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.Image, "image", version.AgentImage(), "agent image")
	cmd.Flags().StringVar(&f.Pushgateway, "pushgateway", "", "Pushgateway URL the agent pushes metrics to")
	cmd.Flags().Int32Var(&f.Replicas, "replicas", 1, "agent replicas (leader election on a Lease keeps one active)")
}

// render builds the agent for an AppBinding. Connected, it reads the
// AppBinding and every Repository its BackupConfigurations and
// RestoreSessions use, so the Role grants exactly their Secrets by name.
func (f *agentFlags) render(ctx context.Context, w *writer, appBinding string, extra ...*stashv1beta1.BackupConfiguration) ([]runtime.Object, error) {
	if f.Image == "" {
		return nil, usageErr("--image must not be empty")
	}
	ab := &appcatalog.AppBinding{ObjectMeta: metav1.ObjectMeta{Name: appBinding, Namespace: w.ns}}
	repoNames := map[string]bool{}
	var cfg *stashv1beta1.BackupConfiguration
	for _, bc := range extra {
		repoNames[bc.Spec.Repository.Name] = bc.Spec.Repository.Namespace == "" || bc.Spec.Repository.Namespace == w.ns
		cfg = bc
	}
	var repos []*stashv1alpha1.Repository
	if w.clients != nil {
		got, err := w.clients.Stash.AppBindings(w.ns).Get(ctx, appBinding)
		if apierrors.IsNotFound(err) {
			return nil, usageErr("AppBinding %s not found in namespace %s: create it with `kubectl stash create appbinding %s ...`", appBinding, w.ns, appBinding)
		}
		if err != nil {
			return nil, fmt.Errorf("read AppBinding %s/%s: %w", w.ns, appBinding, err)
		}
		ab = got
		bcs, err := w.clients.Stash.BackupConfigurations(w.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list BackupConfigurations in %s: %w", w.ns, err)
		}
		for i := range bcs.Items {
			bc := &bcs.Items[i]
			if bc.Spec.Target != nil && bc.Spec.Target.Ref.Name == appBinding && bc.Spec.Target.Ref.Kind == appcatalog.KindAppBinding {
				repoNames[bc.Spec.Repository.Name] = true
				if cfg == nil {
					cfg = bc
				}
			}
		}
		rss, err := w.clients.Stash.RestoreSessions(w.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list RestoreSessions in %s: %w", w.ns, err)
		}
		for _, rs := range rss.Items {
			if rs.Spec.Target != nil && rs.Spec.Target.Ref.Name == appBinding {
				repoNames[rs.Spec.Repository.Name] = rs.Spec.Repository.Namespace == "" || rs.Spec.Repository.Namespace == w.ns
			}
		}
		for name := range repoNames {
			r, err := w.clients.Stash.Repositories(w.ns).Get(ctx, name)
			if apierrors.IsNotFound(err) {
				return nil, usageErr("Repository %s not found in namespace %s: create it with `kubectl stash create repository %s ...`", name, w.ns, name)
			}
			if err != nil {
				return nil, fmt.Errorf("read Repository %s/%s: %w", w.ns, name, err)
			}
			repos = append(repos, r)
		}
	}
	return render.AgentObjects(render.AgentInput{
		AppBinding: ab, Repositories: repos, Config: cfg, Image: f.Image, Version: version.Version,
		Pushgateway: f.Pushgateway, Replicas: f.Replicas,
	})
}

// AgentApplyOptions renders and applies only the agent.
type AgentApplyOptions struct {
	writer
	agentFlags
	Target string
}

func newAgentCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Manage the per-database agent"}
	o := &AgentApplyOptions{writer: writer{factory: f, streams: streams, flags: newApplyFlags()}}
	apply := &cobra.Command{
		Use:   "apply --target appbinding/NAME",
		Short: "Render and apply the agent of a database whose Stash objects were applied as YAML",
		Example: `  # After applying Stash manifests with kubectl apply or GitOps:
  kubectl stash agent apply --target appbinding/mysql --pushgateway http://pushgateway.monitoring:9091
  kubectl stash agent apply --target appbinding/mysql --dry-run=client -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := parseTarget(o.Target)
			if err != nil {
				return err
			}
			if err := o.complete(); err != nil {
				return err
			}
			objs, err := o.agentFlags.render(cmd.Context(), &o.writer, name)
			if err != nil {
				return err
			}
			return o.emit(cmd.Context(), objs)
		},
	}
	apply.Flags().StringVar(&o.Target, "target", "", "the database, as appbinding/NAME")
	o.agentFlags.add(apply)
	o.flags.AddFlags(apply)
	cmd.AddCommand(apply)
	return cmd
}
