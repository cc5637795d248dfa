package cli

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// DeleteOptions deletes a BackupConfiguration and, when nothing else uses
// it, its agent. Backup data stays unless --wipe-repository.
type DeleteOptions struct {
	factory *Factory
	streams genericiooptions.IOStreams
	Name    string
	Wipe    bool
	Yes     bool
}

func newDeleteCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &DeleteOptions{factory: f, streams: streams}
	cmd := &cobra.Command{
		Use:   "delete backupconfig NAME [--wipe-repository [--yes]]",
		Short: "Delete a BackupConfiguration, its sessions and (when unused) its agent; backup data stays",
		Long: `Delete removes the BackupConfiguration and its BackupSessions. The agent's objects
(Deployment, Role, RoleBinding, ServiceAccount) go too, unless another BackupConfiguration
or a running RestoreSession targets the same database. The repository's snapshots are kept
unless --wipe-repository is given, which asks for confirmation unless --yes is given.`,
		Example: `  kubectl stash delete backupconfig mysql-nightly
  kubectl stash delete backupconfig mysql-nightly --wipe-repository --yes`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || (args[0] != "backupconfig" && args[0] != "backupconfiguration") {
				return usageErr("usage: kubectl stash delete backupconfig NAME")
			}
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return filter([]string{"backupconfig"}, toComplete, ""), cobra.ShellCompDirectiveNoFileComp
			}
			return completeNames(f, "backupconfigurations")(cmd, args[1:], toComplete)
		},
		RunE: runE(o),
	}
	cmd.Flags().BoolVar(&o.Wipe, "wipe-repository", false, "also delete every snapshot in the repository, and their data")
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "do not ask for confirmation")
	return cmd
}

// Complete takes the BackupConfiguration's name.
func (o *DeleteOptions) Complete(args []string) error {
	o.Name = args[1]
	return nil
}

// Validate has nothing to check beyond the arguments.
func (o *DeleteOptions) Validate() error { return nil }

// Run connects and deletes.
func (o *DeleteOptions) Run(ctx context.Context) error {
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	return o.delete(ctx, c, o.Name)
}

func (o *DeleteOptions) delete(ctx context.Context, c *Clients, name string) error {
	ns := c.Namespace
	bc, err := c.Stash.BackupConfigurations(ns).Get(ctx, name)
	if apierrors.IsNotFound(err) {
		return usageErr("BackupConfiguration %s not found in namespace %s", name, ns)
	}
	if err != nil {
		return fmt.Errorf("read BackupConfiguration %s/%s: %w", ns, name, err)
	}
	all, err := c.Stash.BackupConfigurations(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	target := ""
	if bc.Spec.Target != nil {
		target = bc.Spec.Target.Ref.Name
	}
	agentInUse, repoInUse := false, []string{}
	for _, other := range all.Items {
		if other.Name == bc.Name {
			continue
		}
		if other.Spec.Target != nil && other.Spec.Target.Ref.Name == target && other.Spec.Target.Ref.Kind == appcatalog.KindAppBinding {
			agentInUse = true
		}
		if other.Spec.Repository.Name == bc.Spec.Repository.Name && other.Spec.Repository.Namespace == bc.Spec.Repository.Namespace {
			repoInUse = append(repoInUse, other.Name)
		}
	}
	if o.Wipe {
		if len(repoInUse) > 0 {
			return usageErr("--wipe-repository: Repository %s is also used by %s; delete those first or keep the data", bc.Spec.Repository.Name, strings.Join(repoInUse, ", "))
		}
		if !o.Yes {
			fmt.Fprintf(o.streams.ErrOut, "This deletes every snapshot in Repository %s and cannot be undone.\nType the repository name to confirm: ", bc.Spec.Repository.Name)
			line, _ := bufio.NewReader(o.streams.In).ReadString('\n')
			if strings.TrimSpace(line) != bc.Spec.Repository.Name {
				return usageErr("not confirmed; nothing was deleted")
			}
		}
	}
	rss, err := c.Stash.RestoreSessions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, rs := range rss.Items {
		if rs.Spec.Target != nil && rs.Spec.Target.Ref.Name == target && rs.Spec.Target.Ref.Kind == appcatalog.KindAppBinding && (rs.Status.Phase == "" || rs.Status.Phase == stashv1beta1.RestorePending || rs.Status.Phase == stashv1beta1.RestoreRunning) {
			agentInUse = true
		}
	}
	if o.Wipe {
		rr, cleanup, err := localRepo(ctx, c, bc.Spec.Repository.Name)
		if err != nil {
			return err
		}
		defer cleanup()
		snaps, err := rr.Snapshots(ctx, "", nil)
		if err != nil {
			return fmt.Errorf("list snapshots of Repository %s: %w", bc.Spec.Repository.Name, err)
		}
		ids := make([]string, 0, len(snaps))
		for _, s := range snaps {
			ids = append(ids, s.ID)
		}
		if len(ids) > 0 {
			if err := rr.ForgetIDs(ctx, ids, true); err != nil {
				return fmt.Errorf("wipe Repository %s (nothing else was deleted): %w", bc.Spec.Repository.Name, err)
			}
		}
		fmt.Fprintf(o.streams.Out, "repository.stash.appscode.com/%s wiped (%d snapshots removed)\n", bc.Spec.Repository.Name, len(ids))
	}
	if err := c.Stash.BackupConfigurations(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete BackupConfiguration %s/%s: %w", ns, name, err)
	}
	fmt.Fprintf(o.streams.Out, "backupconfiguration.stash.appscode.com/%s deleted\n", name)
	sessions, err := c.Stash.BackupSessions(ns).List(ctx, metav1.ListOptions{LabelSelector: stashv1beta1.LabelInvokerName + "=" + name})
	if err == nil {
		for _, s := range sessions.Items {
			if err := c.Stash.BackupSessions(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err == nil {
				fmt.Fprintf(o.streams.Out, "backupsession.stash.appscode.com/%s deleted\n", s.Name)
			}
		}
	}
	if agentInUse || target == "" {
		if target != "" {
			fmt.Fprintf(o.streams.Out, "agent %s kept: another BackupConfiguration or a RestoreSession uses it\n", contract.AgentName(target))
		}
		return nil
	}
	agent := contract.AgentName(target)
	del := func(kind string, err error) {
		if err == nil {
			fmt.Fprintf(o.streams.Out, "%s/%s deleted\n", kind, agent)
		} else if !apierrors.IsNotFound(err) {
			fmt.Fprintf(o.streams.ErrOut, "warning: delete %s/%s: %v\n", kind, agent, err)
		}
	}
	del("deployment.apps", c.Kube.AppsV1().Deployments(ns).Delete(ctx, agent, metav1.DeleteOptions{}))
	del("rolebinding.rbac.authorization.k8s.io", c.Kube.RbacV1().RoleBindings(ns).Delete(ctx, agent, metav1.DeleteOptions{}))
	del("role.rbac.authorization.k8s.io", c.Kube.RbacV1().Roles(ns).Delete(ctx, agent, metav1.DeleteOptions{}))
	del("serviceaccount", c.Kube.CoreV1().ServiceAccounts(ns).Delete(ctx, agent, metav1.DeleteOptions{}))
	del("lease.coordination.k8s.io", c.Kube.CoordinationV1().Leases(ns).Delete(ctx, agent, metav1.DeleteOptions{}))
	return nil
}
