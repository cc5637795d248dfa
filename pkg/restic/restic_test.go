package restic

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every restic run costs about a second here: the repository key is
// derived with scrypt at each start. Tests therefore run in parallel on
// copies of one repository created once, instead of each running init
// (3 s).

const testPassword = "correct-horse-battery"

// template is the repository the tests copy, created on first use.
var template struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if template.dir != "" {
		os.RemoveAll(filepath.Dir(template.dir))
	}
	os.Exit(code)
}

func resticBinary(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "bin", "restic"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("restic binary not found (%v): run make tools", err)
	}
	return p
}

// newRepo returns a fresh copy of the template repository.
func newRepo(t *testing.T) *Repo {
	t.Helper()
	bin := resticBinary(t)
	template.once.Do(func() {
		tmp, err := os.MkdirTemp("", "restic-template-")
		if err != nil {
			template.err = err
			return
		}
		template.dir = filepath.Join(tmp, "repo")
		r := &Repo{Binary: bin, URL: template.dir, Env: map[string]string{"RESTIC_PASSWORD": testPassword}}
		created, err := r.Init(context.Background())
		if err == nil && !created {
			err = errors.New("Init on an empty directory created nothing")
		}
		template.err = err
	})
	if template.err != nil {
		t.Fatalf("creating the template repository: %v", template.err)
	}
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.CopyFS(dir, os.DirFS(template.dir)); err != nil {
		t.Fatal(err)
	}
	return &Repo{Binary: bin, URL: dir, Env: map[string]string{"RESTIC_PASSWORD": testPassword}}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestInit(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := newRepo(t) // the template was made by Init: this is the second run

	created, err := r.Init(ctx)
	if err != nil || created {
		t.Fatalf("second Init() = %v, %v; want false, nil", created, err)
	}
	missing := &Repo{Binary: r.Binary, URL: filepath.Join(t.TempDir(), "none"), Env: r.Env}
	if ok, err := missing.Exists(ctx); ok || err != nil {
		t.Errorf("Exists() on a missing repository = %v, %v; want false, nil", ok, err)
	}
}

func TestBackupSnapshotsDumpForget(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := newRepo(t)

	// The last dump is binary, to check Dump returns the exact bytes.
	last := make([]byte, 200<<10)
	rand.Read(last)
	lastFile := filepath.Join(t.TempDir(), "last.bin")
	if err := os.WriteFile(lastFile, last, 0o600); err != nil {
		t.Fatal(err)
	}
	commands := [][]string{
		{"printf", "%s", "first dump\n"},
		{"printf", "%s", "second dump\n"},
		{"cat", lastFile},
	}
	var ids []string
	for i, c := range commands {
		sum, err := r.Backup(ctx, BackupOptions{Host: "db-1", StdinFilename: "dump.sql", Command: c, Tags: []string{"app", "daily"}})
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		if len(sum.SnapshotID) != 64 || sum.TotalFilesProcessed != 1 || sum.FilesNew+sum.FilesChanged != 1 || sum.TotalDuration <= 0 {
			t.Errorf("backup %d: summary = %+v", i, sum)
		}
		ids = append(ids, sum.SnapshotID)
	}

	snaps, err := r.Snapshots(ctx, "db-1", []string{"daily", "app"})
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshotIDs(snaps); !slices.Equal(got, ids) {
		t.Fatalf("Snapshots() = %v, want %v", got, ids)
	}
	s := snaps[2]
	if s.Hostname != "db-1" || !slices.Equal(s.Paths, []string{"/dump.sql"}) || !slices.Equal(s.Tags, []string{"app", "daily"}) ||
		s.ShortID != s.ID[:8] || s.Time.IsZero() || s.Summary == nil || s.Summary.TotalBytesProcessed != uint64(len(last)) {
		t.Errorf("snapshot = %+v, summary %+v", s, s.Summary)
	}

	var buf bytes.Buffer
	if err := r.Dump(ctx, ids[2], "dump.sql", &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), last) {
		t.Errorf("Dump() returned %d bytes that differ from the %d backed up", buf.Len(), len(last))
	}

	// Prune too: its plain-text report follows the JSON on stdout.
	removed, err := r.Forget(ctx, Policy{KeepLast: 2, Prune: true, Host: "db-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, ids[:1]) {
		t.Errorf("Forget() removed %v, want %v", removed, ids[:1])
	}
	// Stats after Forget also shows exactly KeepLast snapshots remain.
	size, count, err := r.Stats(ctx)
	if err != nil || count != 2 || size < uint64(len(last)) {
		t.Errorf("Stats() = %d, %d, %v; want >= %d, 2, nil", size, count, err, len(last))
	}
}

func snapshotIDs(snaps []Snapshot) []string {
	var ids []string
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.Env = map[string]string{"RESTIC_PASSWORD": "not-the-password"}
	_, err := r.Exists(testContext(t))
	if !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("Exists() error = %v, want ErrWrongPassword", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != 12 || !strings.Contains(e.Error(), "exit 12") {
		t.Errorf("error = %#v", err)
	}
	if strings.Contains(err.Error(), "not-the-password") || strings.Contains(e.Stderr, "not-the-password") {
		t.Errorf("password in error: %v / %s", err, e.Stderr)
	}
}

func TestDumpUnknownSnapshot(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	err := r.Dump(testContext(t), "deadbeef", "dump.sql", &bytes.Buffer{})
	if !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("Dump() error = %v, want ErrSnapshotNotFound", err)
	}
}

// A failing backup command maps to ErrCommandFailed, leaves no snapshot,
// and what it printed is kept with every secret redacted.
func TestBackupCommandFails(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := newRepo(t)
	r.Env["DB_PASSWORD"] = "db-secret-123"
	extra := map[string]string{"API_TOKEN": "token-secret-456"}

	// restic relays the command's stderr from a goroutine and may exit
	// before it is written (seen under load), so try a few times for a run
	// that relayed it; every run must fail and leak nothing.
	var e *Error
	for attempt := 0; attempt < 5; attempt++ {
		_, err := r.Backup(ctx, BackupOptions{
			StdinFilename: "dump.sql",
			Command:       []string{"sh", "-c", `echo partial; echo "login with $DB_PASSWORD $API_TOKEN $RESTIC_PASSWORD" >&2; sleep 0.2; exit 3`},
			ExtraEnv:      extra,
		})
		if !errors.Is(err, ErrCommandFailed) {
			t.Fatalf("Backup() error = %v, want ErrCommandFailed", err)
		}
		if !errors.As(err, &e) {
			t.Fatalf("error %T is not an *Error", err)
		}
		for _, secret := range []string{"db-secret-123", "token-secret-456", testPassword} {
			if strings.Contains(e.Error(), secret) || strings.Contains(e.Stderr, secret) {
				t.Errorf("secret %q leaked: %s\n%s", secret, e.Error(), e.Stderr)
			}
		}
		if strings.Contains(e.Stderr, "login with") {
			break
		}
	}
	if !strings.Contains(e.Stderr, "login with *** *** ***") || !strings.Contains(e.Error(), "exit status 3") {
		t.Errorf("error = %s\nstderr:\n%s", e.Error(), e.Stderr)
	}

	_, err := r.Backup(ctx, BackupOptions{Command: []string{"/nonexistent/dump-tool"}})
	if !errors.Is(err, ErrCommandFailed) {
		t.Errorf("Backup() of a missing command: error = %v, want ErrCommandFailed", err)
	}

	snaps, err := r.Snapshots(ctx, "", nil)
	if err != nil || len(snaps) != 0 {
		t.Errorf("Snapshots() = %v, %v; want none", snaps, err)
	}
}

// While a backup runs, an exclusive command fails with ErrLocked; canceling
// the backup stops restic and its command quickly and leaves no lock.
func TestBackupCancelAndLock(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := newRepo(t)

	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := r.Backup(bctx, BackupOptions{Command: []string{"sleep", "29.25"}})
		done <- err
	}()

	locks := filepath.Join(r.URL, "locks")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if entries, _ := os.ReadDir(locks); len(entries) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("backup took no lock")
		}
	}
	_, err := r.Forget(ctx, Policy{KeepLast: 1, Prune: true})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("Forget() during a backup: error = %v, want ErrLocked", err)
	}

	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
			t.Errorf("Backup() error = %v, want ErrInterrupted and context.Canceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Backup() did not return after cancel")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Backup() took %v to stop", d)
	}
	if hasProcess(t, "sleep\x0029.25\x00") {
		t.Error("the backup command is still running")
	}

	if err := r.Unlock(ctx, false); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(locks); len(entries) != 0 {
		t.Errorf("locks left after cancel and unlock: %d", len(entries))
	}
}

// hasProcess reports whether a process runs with exactly this command line.
func hasProcess(t *testing.T, cmdline string) bool {
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(procs) == 0 {
		t.Log("no /proc: not checking for stray processes")
		return false
	}
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && string(b) == cmdline {
			return true
		}
	}
	return false
}

func TestBackupProgress(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	var calls int
	var maxDone uint64
	sum, err := r.Backup(testContext(t), BackupOptions{
		StdinFilename: "random.bin",
		Command:       []string{"head", "-c", "20000000", "/dev/urandom"},
		Progress: func(s Status) {
			calls++
			maxDone = max(maxDone, s.BytesDone)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || maxDone == 0 {
		t.Errorf("Progress called %d times, max bytes done %d", calls, maxDone)
	}
	if sum.TotalBytesProcessed != 20000000 {
		t.Errorf("summary = %+v", sum)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	if err := r.Check(testContext(t), "10%"); err != nil {
		t.Fatal(err)
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	r := &Repo{Binary: filepath.Join(t.TempDir(), "no-restic"), URL: "/nonexistent", Env: map[string]string{"RESTIC_PASSWORD": testPassword}}
	_, err := r.Exists(t.Context())
	var e *Error
	if err == nil || errors.As(err, &e) || strings.Contains(err.Error(), testPassword) {
		t.Errorf("missing binary: error = %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r.Binary = resticBinary(t)
	if _, err := r.Exists(ctx); !errors.Is(err, ErrInterrupted) {
		t.Errorf("canceled context: error = %v, want ErrInterrupted", err)
	}

	if _, err := (&Repo{Binary: r.Binary}).Exists(t.Context()); err == nil {
		t.Error("empty URL: no error")
	}
}

func TestForgetRejectsEmptyPolicy(t *testing.T) {
	t.Parallel()
	// A binary that cannot run: validation must fail before it is tried.
	r := &Repo{Binary: "/nonexistent/restic", URL: "/nonexistent"}
	for _, p := range []Policy{{}, {Prune: true, Host: "h"}, {KeepLast: -1}, {KeepTags: []string{"a,b"}}} {
		_, err := r.Forget(t.Context(), p)
		if err == nil || strings.Contains(err.Error(), "executable") || strings.Contains(err.Error(), "no such file") {
			t.Errorf("Forget(%+v) error = %v, want a validation error", p, err)
		}
	}
}

// Secrets go to the environment only, never to the arguments; inherited
// RESTIC_* variables do not leak in.
func TestArgsAndEnv(t *testing.T) {
	t.Setenv("RESTIC_PASSWORD_FILE", "/inherited")
	r := &Repo{
		URL:        "s3:http://127.0.0.1:9000/bucket/prefix",
		Env:        map[string]string{"RESTIC_PASSWORD": "pw-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret"},
		Options:    []string{"s3.region=us-east-1"},
		CACertFile: "/ca.pem", InsecureTLS: true,
		Limits:    Limits{UploadKiB: 100},
		RetryLock: 90 * time.Second,
	}
	args := strings.Join(r.globalArgs(), " ")
	want := "--json --no-cache --cacert=/ca.pem --insecure-tls --option=s3.region=us-east-1 --limit-upload=100 --retry-lock=1m30s"
	if args != want {
		t.Errorf("args = %q, want %q", args, want)
	}
	env, err := r.environ(map[string]string{"MYSQL_PWD": "db-secret"})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range []string{"RESTIC_PASSWORD=pw-secret", "AWS_SECRET_ACCESS_KEY=aws-secret", "MYSQL_PWD=db-secret", "RESTIC_REPOSITORY=" + r.URL} {
		if !slices.Contains(env, kv) {
			t.Errorf("env lacks %s", kv)
		}
	}
	if slices.Contains(env, "RESTIC_PASSWORD_FILE=/inherited") {
		t.Error("inherited RESTIC_PASSWORD_FILE passed on")
	}
	// TempDir wins over an inherited TMPDIR and over Env.
	t.Setenv("TMPDIR", "/read-only")
	r.TempDir = "/scratch/tmp"
	r.Env["TMPDIR"] = "/elsewhere"
	env, err = r.environ(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "TMPDIR=/scratch/tmp") || slices.Contains(env, "TMPDIR=/read-only") || slices.Contains(env, "TMPDIR=/elsewhere") {
		t.Errorf("TMPDIR is not TempDir: %q", env)
	}
	if _, err := r.environ(map[string]string{"A=B": "x"}); err == nil {
		t.Error("bad variable name accepted")
	}
	r.CacheDir = "/cache"
	if a := r.globalArgs(); !slices.Contains(a, "--cache-dir=/cache") || slices.Contains(a, "--no-cache") {
		t.Errorf("args with a cache = %q", a)
	}
}
