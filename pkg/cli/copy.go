package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/apply"
)

// CopyOptions copies an object to another namespace.
type CopyOptions struct {
	writer
	To         string
	Kind, Name string
}

func newCopyCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &CopyOptions{writer: writer{factory: f, streams: streams, flags: newApplyFlags()}}
	cmd := &cobra.Command{
		Use:     "copy secret|repository|backupconfig NAME --to-namespace NS",
		Aliases: []string{"cp"},
		Short:   "Copy a Secret, Repository or BackupConfiguration to another namespace",
		Example: `  kubectl stash copy secret s3-creds --to-namespace staging
  kubectl stash copy repository s3-repo --to-namespace staging
  kubectl stash copy backupconfig mysql-nightly --to-namespace staging --dry-run=client -o yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageErr("usage: kubectl stash copy secret|repository|backupconfig NAME --to-namespace NS")
			}
			switch args[0] {
			case "secret", "repository", "backupconfig", "backupconfiguration":
			default:
				return usageErr("can copy secret, repository or backupconfig, not %q", args[0])
			}
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			switch len(args) {
			case 0:
				return filter([]string{"secret", "repository", "backupconfig"}, toComplete, ""), cobra.ShellCompDirectiveNoFileComp
			case 1:
				res := map[string]string{"secret": "secrets", "repository": "repositories", "backupconfig": "backupconfigurations"}[args[0]]
				return filter(listNames(f, res), toComplete, ""), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: runE(o),
	}
	cmd.Flags().StringVar(&o.To, "to-namespace", "", "destination namespace")
	o.flags.AddFlags(cmd)
	return cmd
}

// Complete takes the kind and name, and the namespace.
func (o *CopyOptions) Complete(args []string) error {
	o.Kind, o.Name = args[0], args[1]
	return o.writer.Complete()
}

// Validate checks flags.
func (o *CopyOptions) Validate() error {
	if o.To == "" {
		return usageErr("--to-namespace is required")
	}
	if o.To == o.ns {
		return usageErr("--to-namespace is the source namespace %s", o.ns)
	}
	return o.flags.Validate()
}

// Run reads the source, which needs the cluster even for a client dry run, and copies.
func (o *CopyOptions) Run(ctx context.Context) error {
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	c.Applier.DryRunServer = o.flags.DryRun == DryRunServer
	o.clients = c
	return o.copy(ctx, o.Kind, o.Name)
}

func (o *CopyOptions) copy(ctx context.Context, kind, name string) error {
	c := o.clients
	clean := func(m *metav1.ObjectMeta) {
		*m = metav1.ObjectMeta{Name: m.Name, Namespace: o.To, Labels: m.Labels, Annotations: without(m.Annotations, "kubectl.kubernetes.io/last-applied-configuration")}
	}
	var obj runtime.Object
	switch kind {
	case "secret":
		s, err := c.Kube.CoreV1().Secrets(o.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return notFound(err, "Secret", o.ns, name)
		}
		clean(&s.ObjectMeta)
		s.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}
		obj = &corev1.Secret{TypeMeta: s.TypeMeta, ObjectMeta: s.ObjectMeta, Type: s.Type, Data: s.Data}
	case "repository":
		r, err := c.Stash.Repositories(o.ns).Get(ctx, name)
		if err != nil {
			return notFound(err, "Repository", o.ns, name)
		}
		clean(&r.ObjectMeta)
		r.TypeMeta = metav1.TypeMeta{APIVersion: stashv1alpha1.GroupVersion.String(), Kind: stashv1alpha1.KindRepository}
		r.Status = stashv1alpha1.RepositoryStatus{}
		obj = r
	default:
		b, err := c.Stash.BackupConfigurations(o.ns).Get(ctx, name)
		if err != nil {
			return notFound(err, "BackupConfiguration", o.ns, name)
		}
		clean(&b.ObjectMeta)
		b.TypeMeta = metav1.TypeMeta{APIVersion: stashv1beta1.GroupVersion.String(), Kind: stashv1beta1.KindBackupConfiguration}
		b.Status = stashv1beta1.BackupConfigurationStatus{}
		obj = b
	}
	err := o.flags.Emit(nil, o.streams.Out, func(objs []runtime.Object) ([]apply.Result, error) { return c.Applier.Apply(ctx, objs...) }, []runtime.Object{obj})
	if err == nil && kind != "secret" && o.flags.DryRun == DryRunNone {
		fmt.Fprintf(o.streams.ErrOut, "note: copy the Secrets it names too, and run `kubectl stash agent apply` in %s for its database\n", o.To)
	}
	return err
}

func without(m map[string]string, key string) map[string]string {
	if _, ok := m[key]; !ok {
		return m
	}
	out := map[string]string{}
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func notFound(err error, kind, ns, name string) error {
	if apierrors.IsNotFound(err) {
		return usageErr("%s %s not found in namespace %s", kind, name, ns)
	}
	return fmt.Errorf("read %s %s/%s: %w", kind, ns, name, err)
}
