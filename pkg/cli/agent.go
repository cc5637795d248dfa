package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/render"
	"github.com/kubectl-stash/kubectl-stash/pkg/version"
)

// agentFlags are the flags of every command that renders an agent.
type agentFlags struct {
	Image        string
	Pushgateway  string
	Replicas     int32
	StallTimeout time.Duration
	// LeaseDuration is the agent's leader Lease (0: the agent's default).
	LeaseDuration time.Duration
	// HookExecPod opts in to exec hooks: the Role may exec into this one Pod.
	HookExecPod string
	// VerifyServerArgs are mariadbd options for verifications' scratch server.
	VerifyServerArgs []string
	cmd              *cobra.Command
}

func (f *agentFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	cmd.Flags().StringVar(&f.Image, "image", version.AgentImage(), "agent image")
	cmd.Flags().StringVar(&f.Pushgateway, "pushgateway", "", "Pushgateway URL the agent pushes metrics to")
	cmd.Flags().Int32Var(&f.Replicas, "replicas", 1, "agent replicas (leader election on a Lease keeps one active)")
	cmd.Flags().DurationVar(&f.StallTimeout, "stall-timeout", 0, "the agent stops a backup or restore stream that has not moved this long while restic and the dump live (default: the agent's, 5m)")
	cmd.Flags().DurationVar(&f.LeaseDuration, "lease-duration", 0, "the agent's leader Lease: renewed every two thirds of it (an idle agent's one write) and taken over this long after a crashed agent's last renewal (default: the agent's, 45s; at least 15s)")
	cmd.Flags().StringVar(&f.HookExecPod, "hook-exec-pod", "", "opt in to exec hooks: the one Pod in the namespace the agent may exec into (its Role grants pods/exec on that name only)")
	cmd.Flags().StringArrayVar(&f.VerifyServerArgs, "verify-server-arg", nil, "a mariadbd option for the scratch server verifications restore into, to match the source's settings, e.g. --lower-case-table-names=1 (repeatable)")
}

// validate checks the agent flags before anything is read or applied.
func (f *agentFlags) validate() error {
	if f.Image == "" {
		return usageErr("--image must not be empty")
	}
	if f.StallTimeout < 0 {
		return usageErr("--stall-timeout must be positive")
	}
	if f.LeaseDuration != 0 && f.LeaseDuration < 15*time.Second {
		return usageErr("--lease-duration %s: at least 15s (the leader must renew a few times within it)", f.LeaseDuration)
	}
	if f.HookExecPod != "" {
		if errs := validation.IsDNS1123Subdomain(f.HookExecPod); len(errs) > 0 {
			return usageErr("--hook-exec-pod %q is not a Pod name: %s", f.HookExecPod, strings.Join(errs, "; "))
		}
	}
	for _, v := range f.VerifyServerArgs {
		if !strings.HasPrefix(v, "--") || strings.ContainsAny(v, " \t\n") {
			return usageErr("--verify-server-arg %q: give one mariadbd option, such as --lower-case-table-names=1", v)
		}
		switch name, _, _ := strings.Cut(v, "="); name {
		case "--datadir", "--socket", "--port", "--bind-address", "--skip-networking", "--skip-grant-tables", "--user", "--tmpdir", "--pid-file", "--no-defaults", "--defaults-file", "--defaults-extra-file", "--init-file":
			return usageErr("--verify-server-arg %s: the agent sets it (the scratch server stays private to the agent)", name)
		}
	}
	return nil
}

// render builds the agent for an AppBinding. Connected, it reads the
// AppBinding and every Repository its BackupConfigurations and
// RestoreSessions use, so the Role grants exactly their Secrets by name.
func (f *agentFlags) render(ctx context.Context, w *writer, appBinding string, extraRepos []stashv1beta1.RepositoryRef, extra ...*stashv1beta1.BackupConfiguration) ([]runtime.Object, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	ab := &appcatalog.AppBinding{ObjectMeta: metav1.ObjectMeta{Name: appBinding, Namespace: w.ns}}
	type ref struct{ ns, name string }
	// refs maps each Repository to what names it, for the error when it is missing.
	refs := map[ref]string{}
	add := func(r stashv1beta1.RepositoryRef, by string) {
		ns := r.Namespace
		if ns == "" {
			ns = w.ns
		}
		if _, ok := refs[ref{ns, r.Name}]; !ok {
			refs[ref{ns, r.Name}] = by
		}
	}
	var cfg *stashv1beta1.BackupConfiguration
	for _, bc := range extra {
		add(bc.Spec.Repository, "BackupConfiguration "+bc.Name)
		cfg = bc
	}
	for _, r := range extraRepos {
		add(r, "--repository")
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
				add(bc.Spec.Repository, "BackupConfiguration "+bc.Name)
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
			// A finished restore needs nothing more: only those still to run
			// (Pending, or waiting for this very grant) or running count.
			done := rs.Status.Phase != "" && rs.Status.Phase != stashv1beta1.RestorePending && rs.Status.Phase != stashv1beta1.RestoreRunning
			if !done && rs.Spec.Target != nil && rs.Spec.Target.Ref.Name == appBinding && rs.Spec.Target.Ref.Kind == appcatalog.KindAppBinding {
				add(rs.Spec.Repository, "RestoreSession "+rs.Name)
			}
		}
		for r, by := range refs {
			repo, err := w.clients.Stash.Repositories(r.ns).Get(ctx, r.name)
			if apierrors.IsNotFound(err) {
				fix := fmt.Sprintf("create it with `kubectl stash create repository %s -n %s ...`", r.name, r.ns)
				if by == "--repository" {
					fix += " or drop it from --repository"
				} else {
					fix += fmt.Sprintf(" or delete %s, which names it", by)
				}
				return nil, usageErr("Repository %s not found in namespace %s (named by %s): %s", r.name, r.ns, by, fix)
			}
			if err != nil {
				return nil, fmt.Errorf("read Repository %s/%s: %w", r.ns, r.name, err)
			}
			if err := CheckUsage(repo, w.ns); err != nil {
				return nil, err
			}
			repos = append(repos, repo)
		}
		sort.Slice(repos, func(i, j int) bool {
			return repos[i].Namespace+"/"+repos[i].Name < repos[j].Namespace+"/"+repos[j].Name
		})
		f.keepExisting(ctx, w, appBinding)
	}
	return render.AgentObjects(render.AgentInput{
		AppBinding: ab, Repositories: repos, Config: cfg, Image: f.Image, Version: version.Version,
		Pushgateway: f.Pushgateway, Replicas: f.Replicas, StallTimeout: f.StallTimeout, LeaseDuration: f.LeaseDuration, HookExecPod: f.HookExecPod,
		VerifyServerArgs: f.VerifyServerArgs,
	})
}

// keepExisting carries over the image, Pushgateway, stall timeout, Lease duration, hook exec pod and replicas of an agent
// already deployed, unless the flags were given: re-rendering it for a
// restore must not drop what the backup side configured.
func (f *agentFlags) keepExisting(ctx context.Context, w *writer, appBinding string) {
	dep, err := w.clients.Kube.AppsV1().Deployments(w.ns).Get(ctx, contract.AgentName(appBinding), metav1.GetOptions{})
	if err != nil || len(dep.Spec.Template.Spec.Containers) == 0 {
		return
	}
	changed := func(name string) bool { return f.cmd != nil && f.cmd.Flags().Changed(name) }
	ctr := dep.Spec.Template.Spec.Containers[0]
	if !changed("image") {
		f.Image = ctr.Image
	}
	for _, a := range ctr.Args {
		if v, ok := strings.CutPrefix(a, "--pushgateway="); ok && !changed("pushgateway") {
			f.Pushgateway = v
		}
		if v, ok := strings.CutPrefix(a, "--hook-exec-pod="); ok && !changed("hook-exec-pod") {
			if len(validation.IsDNS1123Subdomain(v)) == 0 {
				f.HookExecPod = v
			}
		}
		if v, ok := strings.CutPrefix(a, "--verify-server-arg="); ok && !changed("verify-server-arg") {
			f.VerifyServerArgs = append(f.VerifyServerArgs, v)
		}
		if v, ok := strings.CutPrefix(a, "--stall-timeout="); ok && !changed("stall-timeout") {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				f.StallTimeout = d
			}
		}
		if v, ok := strings.CutPrefix(a, "--lease-duration="); ok && !changed("lease-duration") {
			if d, err := time.ParseDuration(v); err == nil && d >= 15*time.Second {
				f.LeaseDuration = d
			}
		}
	}
	if !changed("replicas") && dep.Spec.Replicas != nil {
		f.Replicas = *dep.Spec.Replicas
	}
}

// AgentApplyOptions renders and applies only the agent.
type AgentApplyOptions struct {
	writer
	agentFlags
	Target string
	// Repositories are granted on top of those the namespace's objects name:
	// NAME, or NS/NAME for another namespace.
	Repositories []string

	appBinding string
	repos      []stashv1beta1.RepositoryRef
}

func newAgentCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Manage the per-database agent"}
	o := &AgentApplyOptions{writer: writer{factory: f, streams: streams, flags: newApplyFlags()}}
	apply := &cobra.Command{
		Use:   "apply --target appbinding/NAME [--repository [NS/]NAME]...",
		Short: "Render and apply the agent of a database whose Stash objects were applied as YAML",
		Long: `Agent apply renders the database's agent (ServiceAccount, Role, RoleBinding, Deployment) and
applies it. The Role grants, by name, the Secrets of every Repository that a BackupConfiguration
or RestoreSession targeting the AppBinding uses, recomputed on every run, plus those given with
--repository (e.g. before a RestoreSession naming them is applied). The image, Pushgateway,
stall timeout, hook exec pod and replicas of a deployed agent are kept unless given.`,
		Example: `  # After applying Stash manifests with kubectl apply or GitOps:
  kubectl stash agent apply --target appbinding/mysql --pushgateway http://pushgateway.monitoring:9091
  # Also grant a Repository nothing names yet (another namespace's as NS/NAME):
  kubectl stash agent apply --target appbinding/mysql --repository old-repo --repository prod/s3-repo
  kubectl stash agent apply --target appbinding/mysql --dry-run=client -o yaml`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	apply.Flags().StringVar(&o.Target, "target", "", "the database, as appbinding/NAME")
	apply.Flags().StringArrayVar(&o.Repositories, "repository", nil, "also grant this Repository's Secret: NAME, or NS/NAME in another namespace (repeatable)")
	completeFlag(apply, f, "target", "appbindings", "appbinding/")
	completeFlag(apply, f, "repository", "repositories", "")
	o.agentFlags.add(apply)
	o.flags.AddFlags(apply)
	cmd.AddCommand(apply)
	return cmd
}

// Complete parses the target and the repositories, and reads the namespace.
func (o *AgentApplyOptions) Complete([]string) error {
	name, err := parseTarget(o.Target)
	if err != nil {
		return err
	}
	o.appBinding = name
	o.repos = nil
	for _, r := range o.Repositories {
		ref, err := parseRepositoryRef(r)
		if err != nil {
			return err
		}
		o.repos = append(o.repos, ref)
	}
	return o.writer.Complete()
}

// Validate checks the flags.
func (o *AgentApplyOptions) Validate() error {
	if err := o.flags.Validate(); err != nil {
		return err
	}
	return o.agentFlags.validate()
}

// Run renders and applies the agent.
func (o *AgentApplyOptions) Run(ctx context.Context) error {
	if err := o.connect(); err != nil {
		return err
	}
	objs, err := o.agentFlags.render(ctx, &o.writer, o.appBinding, o.repos)
	if err != nil {
		return err
	}
	return o.emit(ctx, objs)
}

// parseRepositoryRef reads NAME or NS/NAME.
func parseRepositoryRef(s string) (stashv1beta1.RepositoryRef, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok {
		ns, name = "", s
	}
	for _, part := range []struct{ what, v string }{{"name", name}, {"namespace", ns}} {
		if part.v == "" && (part.what == "name" || ok) {
			return stashv1beta1.RepositoryRef{}, usageErr("--repository %q must be NAME or NAMESPACE/NAME", s)
		}
		if part.v == "" {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(part.v); len(errs) > 0 {
			return stashv1beta1.RepositoryRef{}, usageErr("--repository %q: %s %q is invalid: %s", s, part.what, part.v, strings.Join(errs, "; "))
		}
	}
	return stashv1beta1.RepositoryRef{Name: name, Namespace: ns}, nil
}

// CheckUsage applies a Repository's usagePolicy to a user in namespace ns.
func CheckUsage(repo *stashv1alpha1.Repository, ns string) error {
	from, ok := contract.UsageAllowed(repo, ns)
	if ok {
		return nil
	}
	return usageErr("Repository %s/%s may not be used from namespace %s: its usagePolicy.allowedNamespaces.from is %s; set it to All (`kubectl stash create repository %s -n %s --allowed-namespaces All ...`)", repo.Namespace, repo.Name, ns, from, repo.Name, repo.Namespace)
}
