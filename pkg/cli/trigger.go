package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// TriggerOptions creates a BackupSession and optionally waits for it.
type TriggerOptions struct {
	factory  *Factory
	streams  genericiooptions.IOStreams
	Config   string
	Wait     bool
	Timeout  time.Duration
	Interval time.Duration
	clients  *Clients
}

func newTriggerCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &TriggerOptions{factory: f, streams: streams, Timeout: time.Hour, Interval: time.Second}
	cmd := &cobra.Command{
		Use:   "trigger BACKUPCONFIG [--wait]",
		Short: "Start a backup now: create a BackupSession for a BackupConfiguration",
		Example: `  kubectl stash trigger mysql-nightly
  kubectl stash trigger mysql-nightly --wait --timeout 30m   # progress, exit code 0 only on success`,
		Args:              exactName,
		ValidArgsFunction: completeNames(f, "backupconfigurations"),
		RunE:              runE(o),
	}
	cmd.Flags().BoolVar(&o.Wait, "wait", false, "wait until the session ends, showing progress")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "how long --wait waits")
	return cmd
}

// Complete takes the BackupConfiguration's name.
func (o *TriggerOptions) Complete(args []string) error {
	o.Config = args[0]
	return nil
}

// Validate checks flags.
func (o *TriggerOptions) Validate() error {
	if o.Timeout <= 0 {
		return usageErr("--timeout must be positive")
	}
	return nil
}

// Run creates the session and waits.
func (o *TriggerOptions) Run(ctx context.Context) error {
	var err error
	if o.clients, err = o.factory.Clients(); err != nil {
		return err
	}
	ns := o.clients.Namespace
	bc, err := o.clients.Stash.BackupConfigurations(ns).Get(ctx, o.Config)
	if apierrors.IsNotFound(err) {
		return usageErr("BackupConfiguration %s not found in namespace %s (see `kubectl get backupconfigurations -n %s`)", o.Config, ns, ns)
	}
	if err != nil {
		return fmt.Errorf("read BackupConfiguration %s/%s: %w", ns, o.Config, err)
	}
	bs := session.NewBackup(bc, "")
	bs.GenerateName = bc.Name + "-"
	if len(bs.GenerateName) > 50 {
		bs.GenerateName = bs.GenerateName[:50]
	}
	bs.Annotations = map[string]string{contract.AnnotationTriggeredBy: contract.ManagedBy}
	created, err := o.clients.Stash.BackupSessions(ns).Create(ctx, bs, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create BackupSession for %s/%s: %w", ns, o.Config, err)
	}
	fmt.Fprintf(o.streams.Out, "backupsession.stash.appscode.com/%s created\n", created.Name)
	if !o.Wait {
		return nil
	}
	return WaitBackupSession(ctx, o.clients, ns, created.Name, o.Timeout, o.Interval, o.streams.ErrOut, o.streams.Out)
}

// wakeOnChange watches one object and signals each change, so a wait
// ends as soon as the status does; the caller's poll stays as the fallback
// when watching is not allowed or the watch breaks.
func wakeOnChange(ctx context.Context, watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error), name string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			w, err := watchFn(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
				continue
			}
			for range w.ResultChan() {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			w.Stop()
		}
	}()
	return ch
}

func phaseOr(p, def string) string {
	if p == "" {
		return def
	}
	return p
}

// PauseOptions sets spec.paused.
type PauseOptions struct {
	factory *Factory
	streams genericiooptions.IOStreams
	Paused  bool
	Name    string
	verb    string
}

func newPauseCmd(f *Factory, streams genericiooptions.IOStreams, paused bool) *cobra.Command {
	verb := "pause"
	if !paused {
		verb = "resume"
	}
	o := &PauseOptions{factory: f, streams: streams, Paused: paused, verb: verb}
	return &cobra.Command{
		Use:     verb + " backupconfig NAME",
		Short:   fmt.Sprintf("%s a BackupConfiguration's schedule", map[bool]string{true: "Pause", false: "Resume"}[paused]),
		Example: fmt.Sprintf("  kubectl stash %s backupconfig mysql-nightly", verb),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return filter([]string{"backupconfig"}, toComplete, ""), cobra.ShellCompDirectiveNoFileComp
			}
			return completeNames(f, "backupconfigurations")(cmd, args[1:], toComplete)
		},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || (args[0] != "backupconfig" && args[0] != "backupconfiguration" && args[0] != "backup") {
				return usageErr("usage: kubectl stash %s backupconfig NAME", verb)
			}
			return nil
		},
		RunE: runE(o),
	}
}

// Complete takes the BackupConfiguration's name.
func (o *PauseOptions) Complete(args []string) error {
	o.Name = args[1]
	return nil
}

// Validate has nothing to check beyond the arguments.
func (o *PauseOptions) Validate() error { return nil }

// Run patches spec.paused.
func (o *PauseOptions) Run(ctx context.Context) error {
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"spec":{"paused":%t}}`, o.Paused)
	_, err = c.Stash.BackupConfigurations(c.Namespace).Patch(ctx, o.Name, types.MergePatchType, []byte(patch))
	if apierrors.IsNotFound(err) {
		return usageErr("BackupConfiguration %s not found in namespace %s", o.Name, c.Namespace)
	}
	if err != nil {
		return fmt.Errorf("patch BackupConfiguration %s/%s: %w", c.Namespace, o.Name, err)
	}
	fmt.Fprintf(o.streams.Out, "backupconfiguration.stash.appscode.com/%s %sd\n", o.Name, o.verb)
	return nil
}
