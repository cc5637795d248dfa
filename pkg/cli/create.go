package cli

import (
	"context"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/apply"
	"github.com/kubectl-stash/kubectl-stash/pkg/catalog"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
	"github.com/kubectl-stash/kubectl-stash/pkg/repository"
)

func newCreateCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a Repository, an AppBinding or a BackupConfiguration (with its agent)",
	}
	cmd.AddCommand(newCreateRepositoryCmd(f, streams), newCreateAppBindingCmd(f, streams), newCreateBackupConfigCmd(f, streams))
	return cmd
}

// writer is shared by the create commands: connect unless client dry run, then emit.
type writer struct {
	factory *Factory
	streams genericiooptions.IOStreams
	flags   *ApplyFlags
	clients *Clients
	ns      string
}

// Complete reads the namespace; nothing is connected yet.
func (w *writer) Complete() error {
	ns, err := w.factory.Namespace()
	if err != nil {
		return err
	}
	w.ns = ns
	return nil
}

// connect makes the clients, unless this is a client dry run, which
// reads and writes nothing.
func (w *writer) connect() error {
	if w.flags.DryRun == DryRunClient || w.clients != nil {
		return nil
	}
	var err error
	if w.clients, err = w.factory.Clients(); err != nil {
		return err
	}
	w.clients.Applier.DryRunServer = w.flags.DryRun == DryRunServer
	return nil
}

func (w *writer) emit(ctx context.Context, objs []runtime.Object) error {
	return w.flags.Emit(nil, w.streams.Out, func(o []runtime.Object) ([]apply.Result, error) { return w.clients.Applier.Apply(ctx, o...) }, objs)
}

// secretData reads a Secret when connected; nil in client dry run.
func (w *writer) secretData(ctx context.Context, name string) (map[string][]byte, error) {
	if w.clients == nil {
		return nil, nil
	}
	s, err := w.clients.Kube.CoreV1().Secrets(w.ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, usageErr("Secret %s not found in namespace %s: create it first with `kubectl create secret generic %s ...`", name, w.ns, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read Secret %s/%s: %w", w.ns, name, err)
	}
	return s.Data, nil
}

// ---- repository

// CreateRepositoryOptions creates a Repository.
type CreateRepositoryOptions struct {
	writer
	Name, Backend, Secret, Bucket, Prefix, Endpoint, Region, URL, Path, AllowedNamespaces string
	MaxConnections                                                                        int64
	InsecureTLS                                                                           bool
	// PVC and SubPath place a local repository in a PersistentVolumeClaim.
	PVC, SubPath string
}

// PVCMountPath is where the agent mounts a local repository's
// PersistentVolumeClaim: one directory per claim, so repositories on
// different claims never share a mount.
func PVCMountPath(claim string) string { return "/stash-repo/" + claim }

// hostPathWarning is printed for --path: the agent's pod is then refused
// where the restricted Pod Security Standard is enforced.
const hostPathWarning = "Warning: --path makes a hostPath volume, which namespaces enforcing the restricted Pod Security Standard refuse: the agent then gets no pod. Use --pvc NAME (a PersistentVolumeClaim) there.\n"

func newCreateRepositoryCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &CreateRepositoryOptions{writer: writer{factory: f, streams: streams, flags: newApplyFlags()}, AllowedNamespaces: "Same"}
	cmd := &cobra.Command{
		Use:   "repository NAME --backend local|s3|gcs|azure|b2|swift|rest --secret SECRET",
		Short: "Create a Repository: where backups are stored, and the Secret with its password and credentials",
		Example: `  kubectl create secret generic s3-creds --from-literal=RESTIC_PASSWORD=... \
      --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...
  kubectl stash create repository s3-repo --backend s3 --endpoint s3.amazonaws.com --bucket backups --prefix prod/mysql --secret s3-creds
  kubectl stash create repository rest-repo --backend rest --url http://rest-server:8000/mysql --secret rest-creds
  kubectl stash create repository pvc-repo --backend local --pvc backups --sub-path mysql --secret local-creds
  kubectl stash create repository local-repo --backend local --path /backups/mysql --secret local-creds --dry-run=client -o yaml`,
		Args: exactName,
		RunE: runE(o),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Backend, "backend", "", "local, s3, gcs, azure, b2, swift or rest")
	fl.StringVar(&o.Secret, "secret", "", "Secret with RESTIC_PASSWORD and the backend's credentials")
	fl.StringVar(&o.Bucket, "bucket", "", "bucket (s3, gcs, b2) or container (azure, swift)")
	fl.StringVar(&o.Prefix, "prefix", "", "path inside the bucket")
	fl.StringVar(&o.Endpoint, "endpoint", "", "S3 endpoint, with or without scheme")
	fl.StringVar(&o.Region, "region", "", "S3 region")
	fl.StringVar(&o.URL, "url", "", "REST server URL")
	fl.StringVar(&o.Path, "path", "", "local backend: directory of a hostPath volume, mounted at the same path in the agent (refused where the restricted Pod Security Standard is enforced; prefer --pvc)")
	fl.StringVar(&o.PVC, "pvc", "", "local backend: a PersistentVolumeClaim in this namespace, mounted in the agent at "+PVCMountPath("NAME"))
	fl.StringVar(&o.SubPath, "sub-path", "", "local backend: the repository's directory inside the volume (default: its root)")
	fl.StringVar(&o.AllowedNamespaces, "allowed-namespaces", o.AllowedNamespaces, "Same, All or Selector: which namespaces may use it")
	fl.Int64Var(&o.MaxConnections, "max-connections", 0, "gcs, azure, b2: parallel connections")
	fl.BoolVar(&o.InsecureTLS, "insecure-tls", false, "s3: skip TLS verification")
	o.flags.AddFlags(cmd)
	completeFlag(cmd, f, "secret", "secrets", "")
	return cmd
}

// Complete takes the NAME and the namespace.
func (o *CreateRepositoryOptions) Complete(args []string) error {
	o.Name = args[0]
	return o.writer.Complete()
}

// Validate checks flags per backend.
func (o *CreateRepositoryOptions) Validate() error {
	if err := o.flags.Validate(); err != nil {
		return err
	}
	if o.Secret == "" {
		return usageErr("--secret is required: a Secret with RESTIC_PASSWORD (and the backend's credentials)")
	}
	need := func(v, flag string) error {
		if v == "" {
			return usageErr("--backend %s needs %s", o.Backend, flag)
		}
		return nil
	}
	switch o.Backend {
	case "s3":
		if err := need(o.Endpoint, "--endpoint"); err != nil {
			return err
		}
		if len(o.Bucket) < 3 {
			return usageErr("--backend s3 needs --bucket with at least 3 characters")
		}
	case "gcs", "azure", "b2", "swift":
		if err := need(o.Bucket, "--bucket"); err != nil {
			return err
		}
	case "rest":
		if err := need(o.URL, "--url"); err != nil {
			return err
		}
		if !strings.HasPrefix(o.URL, "http://") && !strings.HasPrefix(o.URL, "https://") {
			return usageErr("--url must start with http:// or https://")
		}
	case "local":
		if err := o.validateLocal(); err != nil {
			return err
		}
	default:
		return usageErr("--backend must be one of local, s3, gcs, azure, b2, swift, rest (got %q)", o.Backend)
	}
	if o.Backend != "local" && (o.Path != "" || o.PVC != "" || o.SubPath != "") {
		return usageErr("--path, --pvc and --sub-path are for --backend local, not %s", o.Backend)
	}
	switch o.AllowedNamespaces {
	case "Same", "All", "Selector":
	default:
		return usageErr("--allowed-namespaces must be Same, All or Selector")
	}
	return nil
}

// validateLocal wants one volume, --pvc or --path, and a subPath inside it.
func (o *CreateRepositoryOptions) validateLocal() error {
	switch {
	case o.Path != "" && o.PVC != "":
		return usageErr("give --pvc or --path, not both: --pvc %s is a PersistentVolumeClaim, --path %s a hostPath volume", o.PVC, o.Path)
	case o.PVC != "":
		if errs := validation.IsDNS1123Subdomain(o.PVC); len(errs) > 0 {
			return usageErr("--pvc %q is not a PersistentVolumeClaim name: %s", o.PVC, strings.Join(errs, "; "))
		}
	case o.Path == "":
		return usageErr("--backend local needs --pvc NAME (a PersistentVolumeClaim) or --path DIR (a hostPath volume)")
	case !strings.HasPrefix(o.Path, "/"):
		return usageErr("--path %q must be an absolute directory", o.Path)
	}
	if err := repository.CheckSubPath(o.SubPath); err != nil {
		return usageErr("--sub-path: %v", err)
	}
	return nil
}

// Object builds the Repository.
func (o *CreateRepositoryOptions) Object() *stashv1alpha1.Repository {
	b := stashv1alpha1.Backend{StorageSecretName: o.Secret}
	switch o.Backend {
	case "s3":
		b.S3 = &stashv1alpha1.S3Spec{Endpoint: o.Endpoint, Bucket: o.Bucket, Prefix: o.Prefix, Region: o.Region, InsecureTLS: o.InsecureTLS}
	case "gcs":
		b.GCS = &stashv1alpha1.GCSSpec{Bucket: o.Bucket, Prefix: o.Prefix, MaxConnections: o.MaxConnections}
	case "azure":
		b.Azure = &stashv1alpha1.AzureSpec{Container: o.Bucket, Prefix: o.Prefix, MaxConnections: o.MaxConnections}
	case "b2":
		b.B2 = &stashv1alpha1.B2Spec{Bucket: o.Bucket, Prefix: o.Prefix, MaxConnections: o.MaxConnections}
	case "swift":
		b.Swift = &stashv1alpha1.SwiftSpec{Container: o.Bucket, Prefix: o.Prefix}
	case "rest":
		b.Rest = &stashv1alpha1.RestServerSpec{URL: o.URL}
	case "local":
		b.Local = o.localSpec()
	}
	from := stashv1alpha1.FromNamespaces(o.AllowedNamespaces)
	return &stashv1alpha1.Repository{
		TypeMeta:   metav1.TypeMeta{APIVersion: stashv1alpha1.GroupVersion.String(), Kind: stashv1alpha1.KindRepository},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.ns},
		Spec:       stashv1alpha1.RepositorySpec{Backend: b, UsagePolicy: &stashv1alpha1.UsagePolicy{AllowedNamespaces: stashv1alpha1.AllowedNamespaces{From: &from}}},
	}
}

// localSpec is the volume: a PVC mounted at PVCMountPath, or a hostPath
// mounted at its own path; the repository is subPath inside it.
func (o *CreateRepositoryOptions) localSpec() *stashv1alpha1.LocalSpec {
	sub := strings.Trim(path.Clean("/"+o.SubPath), "/")
	if o.PVC != "" {
		return &stashv1alpha1.LocalSpec{MountPath: PVCMountPath(o.PVC), SubPath: sub,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: o.PVC}}}
	}
	hp := corev1.HostPathDirectoryOrCreate
	return &stashv1alpha1.LocalSpec{MountPath: o.Path, SubPath: sub, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: o.Path, Type: &hp}}}
}

// Run checks the Secret's keys, then applies.
func (o *CreateRepositoryOptions) Run(ctx context.Context) error {
	if o.Path != "" {
		fmt.Fprint(o.streams.ErrOut, hostPathWarning)
	}
	if err := o.connect(); err != nil {
		return err
	}
	if o.clients != nil && o.PVC != "" {
		o.warnMissingPVC(ctx)
	}
	if o.clients != nil {
		data, err := o.secretData(ctx, o.Secret)
		if err != nil {
			return err
		}
		if err := repository.CheckSecret(o.Backend, o.Secret, data); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	return o.emit(ctx, []runtime.Object{o.Object()})
}

// warnMissingPVC warns, without failing, when the claim is not there yet
// (it may be applied next): the agent's pod waits for it.
func (o *CreateRepositoryOptions) warnMissingPVC(ctx context.Context) {
	_, err := o.clients.Kube.CoreV1().PersistentVolumeClaims(o.ns).Get(ctx, o.PVC, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		fmt.Fprintf(o.streams.ErrOut, "Warning: PersistentVolumeClaim %s not found in namespace %s: the agent's pod waits until it exists\n", o.PVC, o.ns)
	}
}

// ---- appbinding

// CreateAppBindingOptions creates an AppBinding.
type CreateAppBindingOptions struct {
	writer
	Name, Service, Host, URL, Secret, CABundleFile, Type, Version string
	Port                                                          int
}

func newCreateAppBindingCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &CreateAppBindingOptions{writer: writer{factory: f, streams: streams, flags: newApplyFlags()}, Type: "mysql"}
	cmd := &cobra.Command{
		Use:   "appbinding NAME (--service SVC:PORT | --host H --port P | --url URL) --secret SECRET",
		Short: "Create an AppBinding: how to reach a database, and the Secret with its username and password",
		Example: `  kubectl create secret generic mysql-auth --from-literal=username=root --from-literal=password=...
  kubectl stash create appbinding mysql --service mysql:3306 --secret mysql-auth
  kubectl stash create appbinding mariadb --host 10.0.0.5 --port 3306 --secret db-auth --type mariadb --version 10.11
  kubectl stash create appbinding ext --url "tcp(db.example.com:3306)/" --secret db-auth --ca-bundle-file ca.pem`,
		Args: exactName,
		RunE: runE(o),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Service, "service", "", "Service NAME:PORT in this namespace")
	fl.StringVar(&o.Host, "host", "", "database host")
	fl.IntVar(&o.Port, "port", 3306, "database port, with --host")
	fl.StringVar(&o.URL, "url", "", "address as tcp(host:port)/, mysql://host:port or host:port")
	fl.StringVar(&o.Secret, "secret", "", "Secret with the keys username and password")
	fl.StringVar(&o.CABundleFile, "ca-bundle-file", "", "PEM CA to verify the server's TLS certificate")
	fl.StringVar(&o.Type, "type", o.Type, "mysql or mariadb")
	fl.StringVar(&o.Version, "version", "", "server version (picks the Task when none is given)")
	o.flags.AddFlags(cmd)
	completeFlag(cmd, f, "secret", "secrets", "")
	return cmd
}

// Complete takes the NAME and the namespace.
func (o *CreateAppBindingOptions) Complete(args []string) error {
	o.Name = args[0]
	return o.writer.Complete()
}

// Validate checks flags.
func (o *CreateAppBindingOptions) Validate() error {
	if err := o.flags.Validate(); err != nil {
		return err
	}
	n := 0
	for _, v := range []string{o.Service, o.Host, o.URL} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return usageErr("give exactly one of --service, --host or --url")
	}
	if o.Secret == "" {
		return usageErr("--secret is required: a Secret with the keys username and password")
	}
	if o.Service != "" {
		if _, p, ok := strings.Cut(o.Service, ":"); !ok || p == "" {
			return usageErr("--service must be NAME:PORT, like mysql:3306")
		}
	}
	if o.Port < 1 || o.Port > 65535 {
		return usageErr("--port must be 1-65535")
	}
	if o.Type != "mysql" && o.Type != "mariadb" {
		return usageErr("--type must be mysql or mariadb")
	}
	if _, err := catalog.VersionFor(o.Type, o.Version); err != nil {
		return usageErr("%v", err)
	}
	return nil
}

// Object builds the AppBinding.
func (o *CreateAppBindingOptions) Object() (*appcatalog.AppBinding, error) {
	cc := appcatalog.ClientConfig{}
	switch {
	case o.Service != "":
		name, p, _ := strings.Cut(o.Service, ":")
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return nil, usageErr("--service port %q is not a port number", p)
		}
		cc.Service = &appcatalog.ServiceReference{Name: name, Port: int32(port), Scheme: "tcp"}
	case o.Host != "":
		cc.URL = ptr.To(fmt.Sprintf("tcp(%s:%d)/", o.Host, o.Port))
	default:
		cc.URL = ptr.To(o.URL)
	}
	if o.CABundleFile != "" {
		b, err := os.ReadFile(o.CABundleFile)
		if err != nil {
			return nil, usageErr("read --ca-bundle-file: %v", err)
		}
		cc.CABundle = b
	}
	return &appcatalog.AppBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: appcatalog.GroupVersion.String(), Kind: appcatalog.KindAppBinding},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.ns},
		Spec:       appcatalog.AppBindingSpec{Type: o.Type, Version: o.Version, ClientConfig: cc, Secret: &corev1.LocalObjectReference{Name: o.Secret}},
	}, nil
}

// Run checks the Secret, then applies.
func (o *CreateAppBindingOptions) Run(ctx context.Context) error {
	ab, err := o.Object()
	if err != nil {
		return err
	}
	if err := o.connect(); err != nil {
		return err
	}
	if o.clients != nil {
		data, err := o.secretData(ctx, o.Secret)
		if err != nil {
			return err
		}
		for _, k := range []string{"username", "password"} {
			if len(data[k]) == 0 {
				return usageErr("Secret %s has no %q key: the AppBinding's Secret needs username and password", o.Secret, k)
			}
		}
	}
	return o.emit(ctx, []runtime.Object{ab})
}

// ---- backupconfig

// CreateBackupConfigOptions creates a BackupConfiguration and its agent.
type CreateBackupConfigOptions struct {
	writer
	agentFlags
	Name, Target, Repository, Schedule, Task string
	// SessionTimeout is each session's time limit, spec.timeOut.
	SessionTimeout         string
	Params                 []string
	Keep                   [6]int64
	Prune, Paused          bool
	HistoryLimit, MaxRetry int32
	RetryDelay             time.Duration
	CatchUp                string
	// PITR archives the binlog continuously, committed every PITRInterval.
	PITR         bool
	PITRInterval time.Duration
	// VerifySchedule and VerifyEvery start verifications on their own.
	VerifySchedule string
	VerifyEvery    int
}

func newCreateBackupConfigCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &CreateBackupConfigOptions{writer: writer{factory: f, streams: streams, flags: newApplyFlags()}, HistoryLimit: 1}
	cmd := &cobra.Command{
		Use:     "backupconfig NAME --target appbinding/NAME --repository REPO [--schedule CRON]",
		Aliases: []string{"backupconfiguration", "bc"},
		Short:   "Create a BackupConfiguration and apply the database's agent (ServiceAccount, Role, RoleBinding, Deployment)",
		Example: `  kubectl stash create backupconfig mysql-nightly --target appbinding/mysql --repository s3-repo \
      --schedule "0 2 * * *" --keep-last 7 --keep-daily 30 --prune
  kubectl stash create backupconfig adhoc --target appbinding/mysql --repository s3-repo   # trigger-only
  kubectl stash create backupconfig db --target appbinding/mysql --repository r --schedule "@every 6h" \
      --param args="--databases shop" --dry-run=client -o yaml`,
		Args: exactName,
		RunE: runE(o),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Target, "target", "", "the database, as appbinding/NAME")
	fl.StringVar(&o.Repository, "repository", "", "the Repository to back up to")
	fl.StringVar(&o.Schedule, "schedule", "", `cron schedule ("0 2 * * *", "@hourly", "@every 30s", "CRON_TZ=Europe/Berlin 0 2 * * *"); empty: trigger-only`)
	fl.StringVar(&o.Task, "task", "", "Task name; default: from the AppBinding's type and version")
	fl.StringArrayVar(&o.Params, "param", nil, "task param KEY=VALUE (repeatable), e.g. args=--databases shop")
	for i, n := range []string{"last", "hourly", "daily", "weekly", "monthly", "yearly"} {
		fl.Int64Var(&o.Keep[i], "keep-"+n, 0, "retention: keep the "+n+" N snapshots")
	}
	fl.BoolVar(&o.Prune, "prune", false, "retention: remove the data of forgotten snapshots")
	fl.BoolVar(&o.Paused, "paused", false, "create it paused")
	fl.Int32Var(&o.HistoryLimit, "backup-history-limit", o.HistoryLimit, "finished BackupSessions to keep")
	fl.StringVar(&o.SessionTimeout, "session-timeout", "", "each session's time limit, spec.timeOut (e.g. 2h; default: the agent's, 24h)")
	// --timeout is how long a command waits everywhere else; here it once
	// meant the session's limit. It stays, hidden, for old scripts.
	fl.StringVar(&o.SessionTimeout, "timeout", "", "deprecated: use --session-timeout")
	_ = fl.MarkDeprecated("timeout", "use --session-timeout (--timeout is how long a command waits)")
	fl.Int32Var(&o.MaxRetry, "max-retry", 0, "retry a failed session up to N times")
	fl.DurationVar(&o.RetryDelay, "retry-delay", time.Minute, "wait this long before a retry")
	fl.BoolVar(&o.PITR, "pitr", false, "point-in-time recovery: archive the database's binlog continuously into the repository (annotation "+contract.AnnotationPITR+")")
	fl.DurationVar(&o.PITRInterval, "pitr-interval", contract.DefaultPITRInterval, "with --pitr, commit what was received at least this often (1s to 1h)")
	fl.StringVar(&o.VerifySchedule, "verify-schedule", "", "verify the newest backup on this cron schedule: restore it into a scratch server and compare it with what was backed up (annotation "+contract.AnnotationVerifySchedule+")")
	fl.IntVar(&o.VerifyEvery, "verify-every", 0, "verify every Nth successful backup (annotation "+contract.AnnotationVerifyEvery+")")
	fl.StringVar(&o.CatchUp, "catch-up", stashv1beta1.CatchUpOne, "slots missed while no agent ran: one (run one backup when the agent starts) or none")
	o.agentFlags.add(cmd)
	o.flags.AddFlags(cmd)
	completeFlag(cmd, f, "target", "appbindings", "appbinding/")
	completeFlag(cmd, f, "repository", "repositories", "")
	return cmd
}

// Complete takes the NAME and the namespace.
func (o *CreateBackupConfigOptions) Complete(args []string) error {
	o.Name = args[0]
	if o.agentFlags.cmd != nil && o.agentFlags.cmd.Flags().Changed("timeout") {
		fmt.Fprintln(o.streams.ErrOut, "Flag --timeout has been deprecated, use --session-timeout (--timeout is how long a command waits)")
	}
	return o.writer.Complete()
}

// Validate checks flags.
func (o *CreateBackupConfigOptions) Validate() error {
	if err := o.flags.Validate(); err != nil {
		return err
	}
	if err := o.agentFlags.validate(); err != nil {
		return err
	}
	if _, err := parseTarget(o.Target); err != nil {
		return err
	}
	if o.Repository == "" {
		return usageErr("--repository is required")
	}
	if o.Schedule != "" {
		if _, err := schedule.Parse(o.Schedule); err != nil {
			return usageErr("--schedule: %v", err)
		}
	}
	for _, k := range o.Keep {
		if k < 0 {
			return usageErr("--keep-* counts must not be negative")
		}
	}
	if o.MaxRetry < 0 || o.RetryDelay < 0 {
		return usageErr("--max-retry and --retry-delay must not be negative")
	}
	if o.HistoryLimit < 0 {
		return usageErr("--backup-history-limit must not be negative")
	}
	if o.PITRInterval < time.Second || o.PITRInterval > time.Hour {
		return usageErr("--pitr-interval %s: use 1s to 1h", o.PITRInterval)
	}
	if o.PITRInterval != contract.DefaultPITRInterval && !o.PITR {
		return usageErr("--pitr-interval needs --pitr")
	}
	if o.VerifyEvery < 0 {
		return usageErr("--verify-every %d: a number of backups, 1 or more", o.VerifyEvery)
	}
	if o.VerifySchedule != "" {
		if _, err := contract.ParseVerify(map[string]string{contract.AnnotationVerifySchedule: o.VerifySchedule}, schedule.Check); err != nil {
			return usageErr("--verify-schedule: %v", err)
		}
	}
	if o.CatchUp != "" && o.CatchUp != stashv1beta1.CatchUpOne && o.CatchUp != stashv1beta1.CatchUpNone {
		return usageErr("--catch-up %q: use one or none", o.CatchUp)
	}
	if o.SessionTimeout != "" {
		if d, err := time.ParseDuration(o.SessionTimeout); err != nil || d <= 0 {
			return usageErr("--session-timeout %q is not a positive duration like 30m or 2h", o.SessionTimeout)
		}
	}
	if o.Task != "" {
		if _, ok := catalog.New("").Tasks[o.Task]; !ok {
			return usageErr("unknown --task %q: see `kubectl get tasks.stash.appscode.com`", o.Task)
		}
	}
	if _, err := parseParams(o.Params); err != nil {
		return err
	}
	return nil
}

// Object builds the BackupConfiguration.
func (o *CreateBackupConfigOptions) Object() *stashv1beta1.BackupConfiguration {
	target, _ := parseTarget(o.Target)
	params, _ := parseParams(o.Params)
	bc := &stashv1beta1.BackupConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: stashv1beta1.GroupVersion.String(), Kind: stashv1beta1.KindBackupConfiguration},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.ns},
		Spec: stashv1beta1.BackupConfigurationSpec{
			Schedule:           o.Schedule,
			Driver:             stashv1beta1.DriverRestic,
			Repository:         stashv1beta1.RepositoryRef{Name: o.Repository},
			Task:               stashv1beta1.TaskRef{Name: o.Task, Params: params},
			Target:             &stashv1beta1.BackupTarget{Ref: stashv1beta1.TargetRef{APIVersion: appcatalog.GroupVersion.String(), Kind: appcatalog.KindAppBinding, Name: target}},
			Paused:             o.Paused,
			BackupHistoryLimit: ptr.To(o.HistoryLimit),
			TimeOut:            o.SessionTimeout,
		},
	}
	if o.PITR {
		bc.Annotations = map[string]string{contract.AnnotationPITR: "true"}
		if o.PITRInterval != contract.DefaultPITRInterval {
			bc.Annotations[contract.AnnotationPITRInterval] = o.PITRInterval.String()
		}
	}
	if o.VerifySchedule != "" || o.VerifyEvery > 0 {
		if bc.Annotations == nil {
			bc.Annotations = map[string]string{}
		}
		if o.VerifySchedule != "" {
			bc.Annotations[contract.AnnotationVerifySchedule] = o.VerifySchedule
		}
		if o.VerifyEvery > 0 {
			bc.Annotations[contract.AnnotationVerifyEvery] = strconv.Itoa(o.VerifyEvery)
		}
	}
	if o.CatchUp == stashv1beta1.CatchUpNone {
		if bc.Annotations == nil {
			bc.Annotations = map[string]string{}
		}
		bc.Annotations[stashv1beta1.AnnotationCatchUp] = stashv1beta1.CatchUpNone
	}
	if o.MaxRetry > 0 {
		bc.Spec.RetryConfig = &stashv1beta1.RetryConfig{MaxRetry: o.MaxRetry, Delay: metav1.Duration{Duration: o.RetryDelay}}
	}
	k := o.Keep
	if k[0]+k[1]+k[2]+k[3]+k[4]+k[5] > 0 {
		bc.Spec.RetentionPolicy = stashv1alpha1.RetentionPolicy{Name: "keep", KeepLast: k[0], KeepHourly: k[1], KeepDaily: k[2], KeepWeekly: k[3], KeepMonthly: k[4], KeepYearly: k[5], Prune: o.Prune}
	}
	return bc
}

// Run applies the config and the agent.
func (o *CreateBackupConfigOptions) Run(ctx context.Context) error {
	if err := o.connect(); err != nil {
		return err
	}
	bc := o.Object()
	agentObjs, err := o.agentFlags.render(ctx, &o.writer, bc.Spec.Target.Ref.Name, nil, bc)
	if err != nil {
		return err
	}
	return o.emit(ctx, append([]runtime.Object{bc}, agentObjs...))
}

func exactName(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErr("%s needs exactly one NAME argument", cmd.CommandPath())
	}
	return nil
}

func parseTarget(t string) (string, error) {
	kind, name, ok := strings.Cut(t, "/")
	if !ok || name == "" || !strings.EqualFold(kind, "appbinding") && !strings.EqualFold(kind, "appbindings") {
		return "", usageErr("--target must be appbinding/NAME (got %q)", t)
	}
	return name, nil
}

func parseParams(ps []string) ([]stashv1beta1.Param, error) {
	var out []stashv1beta1.Param
	for _, p := range ps {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageErr("--param %q must be KEY=VALUE", p)
		}
		out = append(out, stashv1beta1.Param{Name: k, Value: v})
	}
	return out, nil
}
