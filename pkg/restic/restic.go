// Package restic runs the restic binary (0.18) for the backup agent.
//
// It knows nothing about Kubernetes. Restic is executed directly, never
// through a shell. Secrets (repository password, backend keys) travel only in
// the child's environment (Repo.Env, BackupOptions.ExtraEnv): they never
// appear on a command line, and any of their values is redacted from the
// stderr kept in errors.
//
// Every command runs with the global --json flag, so restic's fatal error
// arrives as one {"message_type":"exit_error"} line on stderr that we can
// read reliably.
//
// Observed behaviour of restic 0.18.1 (checked against bin/restic):
//
//   - `cat config` exits 10 on a missing repository and 12 on a wrong
//     password; `init` on an existing repository exits 1 ("config file
//     already exists").
//   - `backup --stdin-from-command -- CMD` whose CMD exits non-zero (`false`,
//     `sh -c 'echo partial; exit 3'`) exits 1, not 3, and prints on stderr
//     {"message_type":"error","error":{"message":"failed to save /a.sql:
//     Fatal: command failed: exit status 3"},...} followed by an exit_error
//     "Fatal: unable to save snapshot: ... command failed: exit status 3".
//     No snapshot is written. A CMD that cannot be started gives exit 1 with
//     "failed to start command: fork/exec ...". The CMD's own stderr is
//     relayed prefixed with "subprocess NAME: ".
//   - On SIGTERM or SIGINT restic stops its CMD, removes its lock and exits
//     1 with "context canceled" (not 130), leaving no snapshot.
//   - `forget --json --prune` prints the forget JSON array on stdout followed
//     by prune's plain-text report, even with --quiet.
//   - An unreachable REST/S3 backend is retried with backoff for many
//     minutes ("connection refused", "no such host" on stderr); give the
//     context a deadline.
//   - `backup --stdin-from-command` with an unwritable TMPDIR and a command
//     writing more than a pipe buffer never returns: restic stops reading
//     once it cannot create a temporary pack, prints nothing, and waits for
//     the command, which blocks on the full pipe. Once the command is
//     killed, restic prints the cause ("open $TMPDIR/restic-temp-pack-...:
//     read-only file system") and exits 1. Repo.StallTimeout does that.
package restic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// waitDelay is how long restic gets after SIGTERM to clean up (remove its
// lock) before it is killed.
const waitDelay = 10 * time.Second

// maxJSONOutput bounds the stdout kept for commands whose JSON we decode
// (snapshots, forget, stats); a few thousand snapshots fit easily.
const maxJSONOutput = 64 << 20

// Repo says how to reach one repository.
type Repo struct {
	Binary      string            // path to restic; "" means "restic" on PATH
	URL         string            // RESTIC_REPOSITORY value, e.g. "/data/repo", "s3:http://host/bucket/prefix"
	Env         map[string]string // RESTIC_PASSWORD, AWS_ACCESS_KEY_ID, ...: passed only via the environment
	Options     []string          // each becomes -o value, e.g. "s3.region=us-east-1"; must not hold secrets
	CACertFile  string            // --cacert FILE when set
	InsecureTLS bool              // --insecure-tls
	CacheDir    string            // --cache-dir DIR when set, otherwise --no-cache
	Limits      Limits            // bandwidth limits; zero means unlimited
	RetryLock   time.Duration     // --retry-lock when > 0: wait this long for a locked repository
	// BackendTimeout stops restic when the backend keeps failing for this
	// long (restic alone retries for 15 minutes); 0 leaves it to restic.
	BackendTimeout time.Duration
	// StallTimeout stops a backup or dump stream that has not moved for
	// this long while its processes live (see stall.go); 0 disables.
	StallTimeout time.Duration
	// TempDir is TMPDIR for restic and the command it runs, whatever ours
	// is: restic writes its temporary packs there, and a read-only one
	// stalls a backup (see StallTimeout). "" inherits ours.
	TempDir string
}

// Limits caps restic's bandwidth in KiB/s; 0 means unlimited.
type Limits struct {
	UploadKiB   int
	DownloadKiB int
}

func (r *Repo) binary() string {
	if r.Binary == "" {
		return "restic"
	}
	return r.Binary
}

// globalArgs are the flags shared by every command. Values use the
// --flag=value form so that a value starting with "-" cannot be taken for a
// flag.
func (r *Repo) globalArgs() []string {
	args := []string{"--json"}
	if r.CacheDir != "" {
		args = append(args, "--cache-dir="+r.CacheDir)
	} else {
		args = append(args, "--no-cache")
	}
	if r.CACertFile != "" {
		args = append(args, "--cacert="+r.CACertFile)
	}
	if r.InsecureTLS {
		args = append(args, "--insecure-tls")
	}
	for _, o := range r.Options {
		args = append(args, "--option="+o)
	}
	if r.Limits.UploadKiB > 0 {
		args = append(args, "--limit-upload="+strconv.Itoa(r.Limits.UploadKiB))
	}
	if r.Limits.DownloadKiB > 0 {
		args = append(args, "--limit-download="+strconv.Itoa(r.Limits.DownloadKiB))
	}
	if r.RetryLock > 0 {
		args = append(args, "--retry-lock="+r.RetryLock.String())
	}
	return args
}

// environ builds the child's environment: ours minus any inherited RESTIC_*
// variable (an inherited RESTIC_PASSWORD_FILE or RESTIC_REPOSITORY_FILE
// would silently override what the caller asked for), then Repo.Env, then
// extra, then TMPDIR (when TempDir is set) and RESTIC_REPOSITORY.
func (r *Repo) environ(extra map[string]string) ([]string, error) {
	if r.URL == "" {
		return nil, errors.New("restic: repository URL is empty")
	}
	m := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "RESTIC_") {
			m[k] = v
		}
	}
	for _, src := range []map[string]string{r.Env, extra} {
		for k, v := range src {
			// Never echo the value: it may be a secret.
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return nil, fmt.Errorf("restic: invalid environment variable name %q", k)
			}
			if strings.ContainsRune(v, 0) {
				return nil, fmt.Errorf("restic: environment variable %s holds a NUL byte", k)
			}
			m[k] = v
		}
	}
	if r.TempDir != "" {
		m["TMPDIR"] = r.TempDir
	}
	m["RESTIC_REPOSITORY"] = r.URL
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env, nil
}

// run executes restic with the global flags followed by args. stdout may be
// nil. A failed run returns an *Error unless restic could not be started at
// all or stdout could not be written.
func (r *Repo) run(ctx context.Context, op string, args []string, extraEnv map[string]string, stdout io.Writer) error {
	return r.runWatched(ctx, op, args, extraEnv, nil, stdout, nil)
}

// runWatched is run with a stall watch on the running restic; w may be nil.
func (r *Repo) runWatched(ctx context.Context, op string, args []string, extraEnv map[string]string, stdin io.Reader, stdout io.Writer, w *stallWatch) error {
	env, err := r.environ(extraEnv)
	if err != nil {
		return err
	}
	stderr := newStderrSink(newRedactor(r, extraEnv))
	stderr.backendBudget = r.BackendTimeout
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	stderr.onFatal = stop

	cmd := exec.CommandContext(runCtx, r.binary(), append(r.globalArgs(), args...)...)
	cmd.Env = env
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	if w != nil {
		// restic's own I/O is counted without what it writes to us.
		if stdout != nil {
			cmd.Stdout = countWriter{stdout, &w.stdio}
		}
		cmd.Stderr = countWriter{stderr, &w.stdio}
	}
	cmd.WaitDelay = waitDelay
	setProcessGroup(cmd)

	if err = cmd.Start(); err == nil {
		unwatch := startWatch(w, cmd.Process.Pid, stderr, stop)
		err = cmd.Wait()
		unwatch()
	}
	killProcessGroup(cmd)
	stderr.flush()
	if err == nil {
		return nil
	}

	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return stderr.newError(ctx, op, exitErr.ExitCode())
	}
	if ctx.Err() != nil {
		// Canceled before start, or restic exited 0 after the cancel.
		return stderr.newError(ctx, op, -1)
	}
	return fmt.Errorf("restic %s: %w", op, err)
}

// startWatch runs w on restic (pid) until the returned func is called,
// which waits for the watch to end; the stall is recorded in sink before
// anything is stopped.
func startWatch(w *stallWatch, pid int, sink *stderrSink, stop func()) (unwatch func()) {
	if w == nil || w.timeout <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.watch(ctx, pid, func(msg string) { sink.stalled = msg }, stop)
	}()
	return func() {
		cancel()
		<-done
	}
}

// newStallWatch is the watch for one backup (backup) or dump, nil when
// StallTimeout is not set.
func (r *Repo) newStallWatch(backup bool) *stallWatch {
	if r.StallTimeout <= 0 {
		return nil
	}
	return &stallWatch{timeout: r.StallTimeout, backup: backup, now: time.Now}
}
