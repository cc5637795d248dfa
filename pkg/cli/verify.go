package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// VerifyOptions creates a VerificationSession for a BackupConfiguration.
type VerifyOptions struct {
	factory  *Factory
	streams  genericiooptions.IOStreams
	Config   string
	Snapshot string
	// Target names an AppBinding to restore into instead of a scratch server.
	Target   string
	Name     string
	Wait     bool
	Timeout  time.Duration
	Interval time.Duration
	// SessionTimeout is the verification's own time limit (spec.timeOut).
	SessionTimeout time.Duration
}

func newVerifyCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &VerifyOptions{factory: f, streams: streams, Snapshot: contract.Latest, Timeout: time.Hour, Interval: time.Second}
	cmd := &cobra.Command{
		Use:   "verify BACKUPCONFIG [--snapshot ID|latest] [--target appbinding/NAME] [--wait]",
		Short: "Prove a backup restores: restore a snapshot into a scratch server and compare it, table by table, with what was backed up",
		Example: `  kubectl stash verify mysql-nightly --wait
  kubectl stash verify mysql-nightly --snapshot 4bf6100f --wait --timeout 2h
  kubectl stash verify mysql-nightly --target appbinding/verify-db --wait`,
		Args:              exactName,
		ValidArgsFunction: completeNames(f, "backupconfigurations"),
		RunE:              runE(o),
	}
	completeFlag(cmd, f, "target", "appbindings", "appbinding/")
	fl := cmd.Flags()
	fl.StringVar(&o.Snapshot, "snapshot", o.Snapshot, "snapshot ID, or latest (the newest backup of the config's database)")
	fl.StringVar(&o.Target, "target", "", "restore into this database, as appbinding/NAME, instead of a scratch server in the agent's pod; its agent empties it first, and it keeps its own accounts (never name a production database)")
	fl.StringVar(&o.Name, "name", "", "VerificationSession name (default: generated)")
	fl.BoolVar(&o.Wait, "wait", false, "wait until the verification ends; exit code 0 only when it succeeded")
	fl.DurationVar(&o.Timeout, "timeout", o.Timeout, "how long --wait waits")
	fl.DurationVar(&o.SessionTimeout, "session-timeout", 0, "the verification's time limit, spec.timeOut (default: the agent's, 24h)")
	return cmd
}

// Complete takes the BackupConfiguration's name.
func (o *VerifyOptions) Complete(args []string) error {
	o.Config = args[0]
	return nil
}

// Validate checks flags.
func (o *VerifyOptions) Validate() error {
	switch {
	case o.Snapshot == "":
		return usageErr("--snapshot must be a snapshot ID or latest")
	case o.Timeout <= 0:
		return usageErr("--timeout must be positive")
	case o.SessionTimeout < 0:
		return usageErr("--session-timeout must be positive")
	}
	if o.Target != "" {
		if _, err := parseTarget(o.Target); err != nil {
			return err
		}
	}
	return nil
}

// Object builds the VerificationSession.
func (o *VerifyOptions) Object(ns string) *stashv1beta1.VerificationSession {
	vs := &stashv1beta1.VerificationSession{
		TypeMeta:   metav1.TypeMeta{APIVersion: stashv1beta1.GroupVersion.String(), Kind: stashv1beta1.KindVerificationSession},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: ns, Labels: map[string]string{stashv1beta1.LabelInvokerName: o.Config}},
		Spec: stashv1beta1.VerificationSessionSpec{
			Invoker:  stashv1beta1.BackupInvokerRef{APIGroup: stashv1beta1.GroupVersion.Group, Kind: stashv1beta1.KindBackupConfiguration, Name: o.Config},
			Snapshot: o.Snapshot,
		},
	}
	if o.Name == "" {
		vs.GenerateName = ShortNamePrefix(o.Config+"-verify-", 50)
	}
	if o.SessionTimeout > 0 {
		vs.Spec.TimeOut = o.SessionTimeout.String()
	}
	if o.Target != "" {
		name, _ := parseTarget(o.Target)
		vs.Spec.Target = &stashv1beta1.TargetRef{APIVersion: appcatalog.GroupVersion.String(), Kind: appcatalog.KindAppBinding, Name: name}
	}
	return vs
}

// Run creates the session and waits.
func (o *VerifyOptions) Run(ctx context.Context) error {
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	ns := c.Namespace
	bc, err := c.Stash.BackupConfigurations(ns).Get(ctx, o.Config)
	if apierrors.IsNotFound(err) {
		return usageErr("BackupConfiguration %s not found in namespace %s (see `kubectl get backupconfigurations -n %s`)", o.Config, ns, ns)
	} else if err != nil {
		return fmt.Errorf("read BackupConfiguration %s/%s: %w", ns, o.Config, err)
	}
	if t := o.Object(ns).Spec.Target; t != nil {
		if bc.Spec.Target != nil && bc.Spec.Target.Ref.Name == t.Name {
			return usageErr("--target appbinding/%s is the database BackupConfiguration %s backs up: a verification empties its target first, so name a server kept for verification, or leave --target out", t.Name, o.Config)
		}
		if _, err := c.Stash.AppBindings(ns).Get(ctx, t.Name); apierrors.IsNotFound(err) {
			return usageErr("AppBinding %s not found in namespace %s: --target names a database whose agent runs the verification (`kubectl stash agent apply --target appbinding/NAME --repository %s`)", t.Name, ns, bc.Spec.Repository.Name)
		} else if err != nil {
			return fmt.Errorf("read AppBinding %s/%s: %w", ns, t.Name, err)
		}
	}
	created, err := c.Stash.VerificationSessions(ns).Create(ctx, o.Object(ns), metav1.CreateOptions{FieldManager: "kubectl-stash"})
	if apierrors.IsAlreadyExists(err) {
		return usageErr("VerificationSession %s already exists in %s: pick another --name", o.Name, ns)
	}
	if err != nil {
		return fmt.Errorf("create VerificationSession for %s/%s: %w", ns, o.Config, err)
	}
	fmt.Fprintf(o.streams.Out, "verificationsession.stash.appscode.com/%s created\n", created.Name)
	if !o.Wait {
		return nil
	}
	return verificationWait(c, ns, created.Name, o.Timeout, o.Interval, o.streams.ErrOut, o.streams.Out).Run(ctx)
}

// verificationWait waits for a VerificationSession.
func verificationWait(c *Clients, ns, name string, timeout, every time.Duration, progress, out io.Writer) *SessionWait {
	return &SessionWait{
		Kind: stashv1beta1.KindVerificationSession, Resource: "verificationsession", Namespace: ns, Name: name,
		Timeout: timeout, Every: every, Progress: progress, Out: out,
		Watch: c.Stash.VerificationSessions(ns).Watch,
		Get: func(ctx context.Context) (sessionState, error) {
			vs, err := c.Stash.VerificationSessions(ns).Get(ctx, name)
			if err != nil {
				return sessionState{}, err
			}
			st := vs.Status
			out := sessionState{Phase: string(st.Phase), Message: st.Message, Duration: st.SessionDuration}
			if st.StartTime != nil {
				t := st.StartTime.Time
				out.Start = &t
			}
			switch st.Phase {
			case stashv1beta1.VerificationSucceeded:
				out.Succeeded = true
			case stashv1beta1.VerificationFailed, stashv1beta1.VerificationInvalid:
				out.Failed = true
			}
			return out, nil
		},
	}
}
