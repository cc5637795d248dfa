package agent

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/catalog"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/render"
	"github.com/kubectl-stash/kubectl-stash/pkg/repository"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// ErrInvalid marks a session that cannot run as written; retrying will not help.
var ErrInvalid = errors.New("invalid")

// StepOptions are the parsed args of a backup or restore step.
type StepOptions struct {
	Command       string
	Args          []string
	MultiDumpArgs []string
	WaitTimeout   time.Duration
	EnableCache   bool
	Snapshot      string
	SourceHost    string
}

// resolveTask finds the task named by the invoker, else by the AppBinding's
// parameters, else by its type and version; then expands the step params.
func resolveTask(taskRef stashv1beta1.TaskRef, ab *appcatalog.AppBinding, restore bool) (string, StepOptions, error) {
	name := taskRef.Name
	params := map[string]string{}
	if name == "" {
		addon := addonTask(ab, restore)
		name = addon.Name
		for _, p := range addon.Params {
			params[p.Name] = p.Value
		}
	}
	if name == "" {
		v, err := catalog.VersionFor(ab.Spec.Type, ab.Spec.Version)
		if err != nil {
			return "", StepOptions{}, fmt.Errorf("%w: AppBinding %s: %v: set its spec.type to mysql or mariadb (and spec.version), or name a Task in the session's spec.task.name (`kubectl get tasks.stash.appscode.com`)", ErrInvalid, ab.Name, err)
		}
		name = catalog.BackupTaskName(v)
		if restore {
			name = catalog.RestoreTaskName(v)
		}
	}
	for _, p := range taskRef.Params {
		params[p.Name] = p.Value
	}
	cat := catalog.New("")
	task, ok := cat.Tasks[name]
	if !ok {
		return name, StepOptions{}, fmt.Errorf("%w: unknown Task %q: use one from `kubectl get tasks.stash.appscode.com` (the agent runs the catalog that `kubectl stash install` applies)", ErrInvalid, name)
	}
	want := catalog.StepBackupMySQL
	if restore {
		want = catalog.StepRestoreMySQL
	}
	for _, step := range task.Spec.Steps {
		fn, ok := cat.Functions[step.Name]
		if !ok {
			return name, StepOptions{}, fmt.Errorf("%w: Task %s names unknown Function %q", ErrInvalid, name, step.Name)
		}
		if len(fn.Spec.Args) == 0 || fn.Spec.Args[0] != want {
			continue
		}
		merged := map[string]string{}
		for _, p := range step.Params {
			merged[p.Name] = p.Value
		}
		for k, v := range params {
			merged[k] = v
		}
		var args []string
		for _, a := range fn.Spec.Args[1:] {
			x, err := catalog.Expand(a, merged)
			if err != nil {
				return name, StepOptions{}, fmt.Errorf("%w: Task %s: %v", ErrInvalid, name, err)
			}
			args = append(args, x)
		}
		o, err := parseStep(want, args)
		if err != nil {
			return name, StepOptions{}, fmt.Errorf("%w: Task %s params: %v", ErrInvalid, name, err)
		}
		return name, o, nil
	}
	return name, StepOptions{}, fmt.Errorf("%w: Task %s has no %s step", ErrInvalid, name, want)
}

func parseStep(command string, args []string) (StepOptions, error) {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := StepOptions{Command: command}
	var dumpArgs, multi, wait, cache, snap, src string
	fs.StringVar(&dumpArgs, "args", "", "")
	fs.StringVar(&multi, "multi-dump-args", "", "")
	fs.StringVar(&wait, "wait-timeout", "300", "")
	fs.StringVar(&cache, "enable-cache", "true", "")
	fs.StringVar(&snap, "snapshot", "", "")
	fs.StringVar(&src, "source-host", "", "")
	fs.String("max-connections", "0", "")
	fs.String("output-dir", "", "")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	// Split on whitespace only: no shell ever sees these values.
	o.Args = strings.Fields(dumpArgs)
	o.MultiDumpArgs = strings.Fields(multi)
	// Stash's waitTimeout is a number of seconds; a Go duration ("2m") is
	// taken as written.
	var d time.Duration
	if n, err := strconv.ParseUint(wait, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(wait); err != nil || d < 0 {
		return o, fmt.Errorf("waitTimeout %q is not a number of seconds (or a duration such as 2m)", wait)
	}
	o.WaitTimeout = d
	o.EnableCache = cache != "false"
	o.Snapshot, o.SourceHost = snap, src
	return o, nil
}

type addonTaskRef struct {
	Name   string               `json:"name"`
	Params []stashv1beta1.Param `json:"params"`
}

// addonTask reads parameters.stash.addon.{backupTask,restoreTask} as Stash does.
func addonTask(ab *appcatalog.AppBinding, restore bool) addonTaskRef {
	if ab.Spec.Parameters == nil || len(ab.Spec.Parameters.Raw) == 0 {
		return addonTaskRef{}
	}
	var p struct {
		Stash struct {
			Addon struct {
				BackupTask  addonTaskRef `json:"backupTask"`
				RestoreTask addonTaskRef `json:"restoreTask"`
			} `json:"addon"`
		} `json:"stash"`
	}
	if err := json.Unmarshal(ab.Spec.Parameters.Raw, &p); err != nil {
		return addonTaskRef{}
	}
	if restore {
		return p.Stash.Addon.RestoreTask
	}
	return p.Stash.Addon.BackupTask
}

// connection reads the AppBinding's address and its Secret.
func (a *Agent) connection(ctx context.Context) (*appcatalog.AppBinding, database.Conn, error) {
	ab, err := a.stash.AppBindings(a.cfg.Namespace).Get(ctx, a.cfg.AppBinding)
	if apierrors.IsNotFound(err) {
		return nil, database.Conn{}, fmt.Errorf("%w: AppBinding %s/%s not found: create it with `kubectl stash create appbinding %s ...`", ErrInvalid, a.cfg.Namespace, a.cfg.AppBinding, a.cfg.AppBinding)
	}
	if err != nil {
		return nil, database.Conn{}, fmt.Errorf("read AppBinding %s/%s: %w", a.cfg.Namespace, a.cfg.AppBinding, err)
	}
	conn, err := a.connFromAppBinding(ctx, ab)
	return ab, conn, err
}

func (a *Agent) connFromAppBinding(ctx context.Context, ab *appcatalog.AppBinding) (database.Conn, error) {
	var c database.Conn
	cc := ab.Spec.ClientConfig
	switch {
	case cc.URL != nil && *cc.URL != "":
		h, p, err := database.ParseAddress(*cc.URL)
		if err != nil {
			return c, fmt.Errorf("%w: AppBinding %s clientConfig.url: %v", ErrInvalid, ab.Name, err)
		}
		c.Host, c.Port = h, p
	case cc.Service != nil:
		ns := cc.Service.Namespace
		if ns == "" {
			ns = ab.Namespace
		}
		c.Host = fmt.Sprintf("%s.%s.svc", cc.Service.Name, ns)
		c.Port = int(cc.Service.Port)
		if c.Port == 0 {
			c.Port = database.DefaultPort
		}
	default:
		return c, fmt.Errorf("%w: AppBinding %s has neither clientConfig.url nor clientConfig.service", ErrInvalid, ab.Name)
	}
	c.CABundle = cc.CABundle
	c.InsecureSkipVerify = cc.InsecureSkipTLSVerify
	if ab.Spec.Secret == nil || ab.Spec.Secret.Name == "" {
		return c, fmt.Errorf("%w: AppBinding %s names no secret: set spec.secret.name to a Secret with username and password", ErrInvalid, ab.Name)
	}
	sec, err := a.kube.Secrets(a.cfg.Namespace).Get(ctx, ab.Spec.Secret.Name)
	if apierrors.IsNotFound(err) {
		return c, fmt.Errorf("%w: Secret %s (AppBinding %s's spec.secret) not found: create it with keys username and password", ErrInvalid, ab.Spec.Secret.Name, ab.Name)
	}
	if err != nil {
		return c, fmt.Errorf("read Secret %s of AppBinding %s: %w", ab.Spec.Secret.Name, ab.Name, err)
	}
	for _, k := range []string{"username", "password"} {
		if len(sec.Data[k]) == 0 {
			return c, fmt.Errorf("%w: Secret %s (AppBinding %s) has no %q key: add it", ErrInvalid, sec.Name, ab.Name, k)
		}
	}
	c.User, c.Password = string(sec.Data["username"]), string(sec.Data["password"])
	return c, nil
}

// repository reads a Repository and its Secret, enforcing its usage policy.
func (a *Agent) repository(ctx context.Context, ref stashv1beta1.RepositoryRef) (*stashv1alpha1.Repository, map[string][]byte, error) {
	ns := ref.Namespace
	if ns == "" {
		ns = a.cfg.Namespace
	}
	repo, err := a.stash.Repositories(ns).Get(ctx, ref.Name)
	if apierrors.IsNotFound(err) {
		return nil, nil, fmt.Errorf("%w: Repository %s/%s not found: create it with `kubectl stash create repository %s ...`", ErrInvalid, ns, ref.Name, ref.Name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read Repository %s/%s: %w", ns, ref.Name, err)
	}
	if from, ok := contract.UsageAllowed(repo, a.cfg.Namespace); !ok {
		return nil, nil, fmt.Errorf("%w: Repository %s/%s does not allow use from namespace %s (usagePolicy.allowedNamespaces.from is %s): set it to All on the Repository", ErrInvalid, ns, ref.Name, a.cfg.Namespace, from)
	}
	name := repo.Spec.Backend.StorageSecretName
	sec, err := a.kube.Secrets(ns).Get(ctx, name)
	if apierrors.IsNotFound(err) {
		return nil, nil, fmt.Errorf("%w: Secret %s/%s (Repository %s's storageSecretName) not found", ErrInvalid, ns, name, ref.Name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read Secret %s/%s of Repository %s: %w", ns, name, ref.Name, err)
	}
	return repo, sec.Data, nil
}

// openRepo reads a Repository and its Secret and builds the restic repo in
// the scratch directory; call cleanup when done.
func (a *Agent) openRepo(ctx context.Context, ref stashv1beta1.RepositoryRef, cache bool) (*stashv1alpha1.Repository, *restic.Repo, func(), error) {
	repo, secret, err := a.repository(ctx, ref)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := a.checkLocal(repo); err != nil {
		return nil, nil, nil, err
	}
	if err := os.MkdirAll(a.cfg.ScratchDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("scratch directory %s: %w", a.cfg.ScratchDir, err)
	}
	rr, cleanup, err := repository.Config(repo, secret, a.cfg.ScratchDir, a.cfg.ResticBin)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: Repository %s: %v", ErrInvalid, repo.Name, err)
	}
	if !cache {
		rr.CacheDir = ""
	}
	rr.BackendTimeout = a.cfg.BackendTimeout
	rr.StallTimeout = a.cfg.StallTimeout
	rr.TempDir = TempDir(a.cfg.ScratchDir)
	return repo, rr, cleanup, nil
}

// checkLocal says why a local Repository's volume cannot be reached: a
// PVC of another namespace (no pod here can mount it), a subPath outside
// the volume, or a volume the agent's Deployment does not mount (rendered
// before the Repository).
func (a *Agent) checkLocal(repo *stashv1alpha1.Repository) error {
	l := repo.Spec.Backend.Local
	if l == nil {
		return nil
	}
	if repo.Namespace != a.cfg.Namespace && render.NamespacedVolume(l.VolumeSource) {
		return fmt.Errorf("%w: Repository %s/%s is a volume of namespace %s (a PersistentVolumeClaim), which a pod in %s cannot mount: use a Repository in %s, or an object-store backend", ErrInvalid, repo.Namespace, repo.Name, repo.Namespace, a.cfg.Namespace, a.cfg.Namespace)
	}
	if err := repository.CheckSubPath(l.SubPath); err != nil {
		return fmt.Errorf("%w: Repository %s/%s: %v", ErrInvalid, repo.Namespace, repo.Name, err)
	}
	// A hostPath is the host's directory when the agent runs as a process
	// (make up, the tests), and restic creates it; other volumes exist
	// only where the Deployment mounts them.
	if l.HostPath != nil {
		return nil
	}
	if st, err := os.Stat(l.MountPath); err != nil || !st.IsDir() {
		return fmt.Errorf("the volume of Repository %s/%s is not mounted at %s in the agent: update the agent with `kubectl stash agent apply --target appbinding/%s -n %s`", repo.Namespace, repo.Name, l.MountPath, a.cfg.AppBinding, a.cfg.Namespace)
	}
	return nil
}
