package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumpfilter"
)

// RestoreOptions creates a RestoreSession (and the target's agent).
type RestoreOptions struct {
	writer
	agentFlags
	Repository, RepositoryNamespace, Target, Snapshot, At, Name, SourceHost string
	Params                                                                  []string
	Wait                                                                    bool
	Timeout                                                                 time.Duration
	// SessionTimeout is the restore's own time limit (spec.timeOut).
	SessionTimeout time.Duration
	at             time.Time
	// ToGTID replays the binlog archive up to a transaction, through it
	// unless GTIDExclusive.
	ToGTID        string
	GTIDExclusive bool
	// AllowGap replays across gaps in the archive; ReadOnly holds the
	// target read-only for others (written only when given).
	AllowGap, ReadOnly bool
	// Include, Exclude and Rename choose what of the snapshot is restored,
	// and under which database names.
	Include, Exclude, Rename []string
	sel                      dumpfilter.Rules
	// SkipBinlog keeps the restore out of the target's binlog.
	SkipBinlog bool
}

func newRestoreCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &RestoreOptions{writer: writer{factory: f, streams: streams, flags: newApplyFlags()}, Snapshot: contract.Latest, Timeout: time.Hour}
	cmd := &cobra.Command{
		Use:   "restore --repository REPO --target appbinding/NAME [--snapshot ID|latest | --at TIME|latest | --to-gtid GTID] [--wait]",
		Short: "Restore a snapshot into a database: create a RestoreSession (and the database's agent if it has none)",
		Example: `  kubectl stash restore --repository s3-repo --target appbinding/mysql-new --snapshot latest --wait
  kubectl stash restore --repository s3-repo --target appbinding/mysql --snapshot 4bf6100f
  kubectl stash restore --repository s3-repo --target appbinding/mysql --at 2026-11-20T02:00:00Z --wait
  kubectl stash restore --repository s3-repo --target appbinding/mysql-new --to-gtid 0-1-4711 --gtid-exclusive
  kubectl stash restore --repository s3-repo --target appbinding/mysql-new --at latest --allow-gap
  kubectl stash restore -n staging --repository s3-repo --repository-namespace prod --target appbinding/mysql
  kubectl stash restore --repository s3-repo --target appbinding/mysql --include 'shop.*' --include crm.customers --exclude 'shop.audit_*'
  kubectl stash restore --repository s3-repo --target appbinding/mysql --include 'shop.*' --rename-database shop=shop_restored
  kubectl stash restore --repository s3-repo --target appbinding/mysql-new --exclude 'mysql.*'   # keep the target's accounts`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Repository, "repository", "", "the Repository to restore from")
	fl.StringVar(&o.RepositoryNamespace, "repository-namespace", "", "the Repository's namespace, when not the target's (its usagePolicy must allow it)")
	fl.StringVar(&o.Target, "target", "", "the database to restore into, as appbinding/NAME")
	fl.StringVar(&o.Snapshot, "snapshot", o.Snapshot, "snapshot ID, or latest")
	fl.StringVar(&o.ToGTID, "to-gtid", "", "replay the binlog archive up to this transaction (domain-server-sequence), on top of the newest backup before it")
	fl.BoolVar(&o.GTIDExclusive, "gtid-exclusive", false, "with --to-gtid, stop before the transaction instead of after it")
	fl.StringVar(&o.At, "at", "", "restore the database as it was at this time (RFC 3339, e.g. 2026-11-20T02:00:00Z): the newest snapshot at or before it, then, where the binlog is archived, its replay up to that second; latest replays the whole archive")
	fl.BoolVar(&o.AllowGap, "allow-gap", false, "with --at or --to-gtid, replay across gaps in the binlog archive instead of refusing: the gaps' events are missing from the result, and the status lists them")
	fl.BoolVar(&o.ReadOnly, "read-only", false, "hold the target read-only for every other client while the restore runs (default: true with --at or --to-gtid, false otherwise)")
	fl.StringArrayVar(&o.Include, "include", nil, "restore only these objects, as DATABASE.TABLE with * and ? (repeatable): 'shop.*', crm.customers; default everything")
	fl.StringArrayVar(&o.Exclude, "exclude", nil, "leave these objects out, as DATABASE.TABLE with * and ? (repeatable): 'shop.audit_*', 'mysql.*' keeps the target's accounts")
	fl.StringArrayVar(&o.Rename, "rename-database", nil, "restore database FROM as TO (repeatable), FROM=TO: its views, routines and triggers follow; with no --include, only the renamed databases are restored")
	fl.BoolVar(&o.SkipBinlog, "skip-binlog", false, "keep the restore out of the target's binlog (sql_log_bin=0; needs BINLOG ADMIN or SUPER): for a target whose replicas will be seeded again, never for a primary whose replicas must follow")
	fl.StringVar(&o.SourceHost, "source-host", "", "the host the snapshots were taken from (default: any)")
	fl.StringVar(&o.Name, "name", "", "RestoreSession name (default: generated)")
	fl.StringArrayVar(&o.Params, "param", nil, "task param KEY=VALUE (repeatable), e.g. args=--force")
	fl.BoolVar(&o.Wait, "wait", false, "wait until the restore ends, showing progress")
	fl.DurationVar(&o.Timeout, "timeout", o.Timeout, "how long --wait waits")
	fl.DurationVar(&o.SessionTimeout, "session-timeout", 0, "the restore's time limit, spec.timeOut (default: the agent's, 24h)")
	o.agentFlags.add(cmd)
	o.flags.AddFlags(cmd)
	completeFlag(cmd, f, "target", "appbindings", "appbinding/")
	completeFlag(cmd, f, "repository", "repositories", "")
	return cmd
}

// Complete reads the namespace.
func (o *RestoreOptions) Complete([]string) error {
	return o.writer.Complete()
}

// Validate checks flags.
func (o *RestoreOptions) Validate() error {
	if err := o.flags.Validate(); err != nil {
		return err
	}
	if err := o.agentFlags.validate(); err != nil {
		return err
	}
	if o.Repository == "" {
		return usageErr("--repository is required")
	}
	if _, err := parseTarget(o.Target); err != nil {
		return err
	}
	if o.At != "" {
		if o.At != contract.Latest {
			t, err := time.Parse(time.RFC3339, o.At)
			if err != nil {
				return usageErr("--at %q is neither an RFC 3339 time like 2026-11-20T02:00:00Z nor latest", o.At)
			}
			o.at = t
		}
		if o.Snapshot != contract.Latest && o.Snapshot != "" {
			return usageErr("give --snapshot or --at, not both")
		}
	}
	if o.Snapshot == "" {
		return usageErr("--snapshot must be a snapshot ID or latest")
	}
	if o.ToGTID != "" {
		if _, _, _, err := contract.ParseGTID(o.ToGTID); err != nil {
			return usageErr("--to-gtid: %v", err)
		}
		if o.At != "" || o.Snapshot != contract.Latest {
			return usageErr("give --to-gtid alone: it picks its own snapshot, as --at does")
		}
	} else if o.GTIDExclusive {
		return usageErr("--gtid-exclusive needs --to-gtid")
	}
	sel, err := dumpfilter.ParseRules(o.Include, o.Exclude, o.Rename)
	if err != nil {
		return usageErr("%v", err)
	}
	o.sel = sel
	if !sel.Empty() && (o.At != "" || o.ToGTID != "") {
		return usageErr("--include, --exclude and --rename-database restore part of a snapshot; --at and --to-gtid replay the whole server's binlog onto the whole snapshot: give one or the other")
	}
	if o.AllowGap && o.At == "" && o.ToGTID == "" {
		return usageErr("--allow-gap needs --at or --to-gtid: only a replay of the binlog archive crosses a gap")
	}
	if o.Timeout <= 0 {
		return usageErr("--timeout must be positive")
	}
	if o.SessionTimeout < 0 {
		return usageErr("--session-timeout must be positive")
	}
	_, err = parseParams(o.Params)
	return err
}

// Object builds the RestoreSession.
func (o *RestoreOptions) Object() *stashv1beta1.RestoreSession {
	target, _ := parseTarget(o.Target)
	params, _ := parseParams(o.Params)
	rs := &stashv1beta1.RestoreSession{
		TypeMeta:   metav1.TypeMeta{APIVersion: stashv1beta1.GroupVersion.String(), Kind: stashv1beta1.KindRestoreSession},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.ns},
		Spec: stashv1beta1.RestoreSessionSpec{
			Driver:     stashv1beta1.DriverRestic,
			Repository: stashv1beta1.RepositoryRef{Name: o.Repository, Namespace: o.RepositoryNamespace},
			Task:       stashv1beta1.TaskRef{Params: params},
			Target: &stashv1beta1.RestoreTarget{
				Ref:   stashv1beta1.TargetRef{APIVersion: appcatalog.GroupVersion.String(), Kind: appcatalog.KindAppBinding, Name: target},
				Rules: []stashv1beta1.Rule{{Snapshots: []string{o.Snapshot}, SourceHost: o.SourceHost, Include: o.Include, Exclude: o.Exclude}},
			},
		},
	}
	if o.Name == "" {
		rs.GenerateName = ShortNamePrefix(target+"-restore-", 50)
	}
	if o.SessionTimeout > 0 {
		rs.Spec.TimeOut = o.SessionTimeout.String()
	}
	rs.Annotations = map[string]string{}
	if o.AllowGap {
		rs.Annotations[contract.AnnotationRestoreAllowGap] = "true"
	}
	if len(o.Rename) > 0 {
		rs.Annotations[contract.AnnotationRestoreRenameDatabase] = strings.Join(o.Rename, ",")
	}
	if o.SkipBinlog {
		rs.Annotations[contract.AnnotationRestoreSkipBinlog] = "true"
	}
	if o.agentFlags.cmd != nil && o.agentFlags.cmd.Flags().Changed("read-only") {
		rs.Annotations[contract.AnnotationRestoreReadOnly] = strconv.FormatBool(o.ReadOnly)
	}
	if o.ToGTID != "" {
		rs.Annotations[contract.AnnotationRestoreToGTID] = o.ToGTID
		if o.GTIDExclusive {
			rs.Annotations[contract.AnnotationRestoreGTIDExclusive] = "true"
		}
		rs.Spec.Target.Rules[0].Snapshots = nil
		if o.SourceHost == "" {
			rs.Spec.Target.Rules = nil
		}
	}
	if o.At != "" {
		at := contract.Latest
		if !o.at.IsZero() {
			at = o.at.UTC().Format(time.RFC3339)
		}
		rs.Annotations[contract.AnnotationRestoreAt] = at
		rs.Spec.Target.Rules[0].Snapshots = nil
		if o.SourceHost == "" {
			rs.Spec.Target.Rules = nil
		}
	}
	if len(rs.Annotations) == 0 {
		rs.Annotations = nil
	}
	return rs
}

// Run applies the agent, then creates the RestoreSession, then waits.
func (o *RestoreOptions) Run(ctx context.Context) error {
	if err := o.connect(); err != nil {
		return err
	}
	rs := o.Object()
	agentObjs, err := o.agentFlags.render(ctx, &o.writer, rs.Spec.Target.Ref.Name, []stashv1beta1.RepositoryRef{rs.Spec.Repository})
	if err != nil {
		return err
	}
	// A restore that brings the snapshot's accounts must not surprise.
	if o.sel.Selects("mysql", "global_priv") {
		fmt.Fprintln(o.streams.ErrOut, "Warning: this restore brings the snapshot's mysql schema, so the snapshot's accounts, passwords and grants replace the target's; add --exclude 'mysql.*' to keep the target's")
	}
	if o.flags.DryRun == DryRunClient {
		return o.emit(ctx, append(agentObjs, rs))
	}
	// The agent first (so its Role covers the repository), then the session,
	// created rather than applied: a restore is a one-shot request.
	if err := o.emit(ctx, agentObjs); err != nil {
		return err
	}
	opts := metav1.CreateOptions{FieldManager: "kubectl-stash"}
	if o.flags.DryRun == DryRunServer {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	created, err := o.clients.Stash.RestoreSessions(o.ns).Create(ctx, rs, opts)
	if apierrors.IsAlreadyExists(err) {
		return usageErr("RestoreSession %s already exists in %s: pick another --name", rs.Name, o.ns)
	}
	if err != nil {
		return fmt.Errorf("create RestoreSession in %s: %w", o.ns, err)
	}
	fmt.Fprintf(o.streams.Out, "restoresession.stash.appscode.com/%s created\n", created.Name)
	if !o.Wait || o.flags.DryRun == DryRunServer {
		return nil
	}
	return WaitRestoreSession(ctx, o.clients, o.ns, created.Name, o.Timeout, time.Second, o.streams.ErrOut, o.streams.Out)
}

// ShortNamePrefix trims a generateName prefix to max characters.
func ShortNamePrefix(p string, max int) string {
	if len(p) > max {
		return p[:max]
	}
	return p
}
