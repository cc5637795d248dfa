package restic

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Stderr as restic 0.18.1 wrote it (with --json) in the cases below.
func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		op        string
		code      int
		stderr    string
		want      []error
		notWant   []error
		wantError string
	}{
		{
			name: "wrong password", op: "backup", code: 12,
			stderr:    `{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}`,
			want:      []error{ErrWrongPassword},
			wantError: "restic backup: exit 12: wrong password or no key found (Fatal: wrong password or no key found)",
		},
		{
			name: "missing repository", op: "cat config", code: 10,
			stderr:    `{"message_type":"exit_error","code":10,"message":"Fatal: repository does not exist: unable to open config file: stat /r/config: no such file or directory\nIs there a repository at the following location?\n/r"}`,
			want:      []error{ErrRepoNotExist},
			wantError: "restic cat config: exit 10: repository does not exist (Fatal: repository does not exist: unable to open config file: stat /r/config: no such file or directory Is there a repository at the following location? /r)",
		},
		{
			name: "locked", op: "prune", code: 11,
			stderr: "repo already locked, waiting up to 0s for the lock\nunable to create lock in backend: repository is already locked by PID 4534 on vm by root (UID 0, GID 0)",
			want:   []error{ErrLocked},
		},
		{
			name: "command failed", op: "backup", code: 1,
			stderr: `subprocess sh: some output
{"message_type":"error","error":{"message":"failed to save /a.sql: Fatal: command failed: exit status 3"},"during":"archival","item":"/a.sql"}
{"message_type":"exit_error","code":1,"message":"Fatal: unable to save snapshot: failed to save /a.sql: Fatal: command failed: exit status 3"}`,
			want:      []error{ErrCommandFailed},
			notWant:   []error{ErrBackend},
			wantError: "restic backup: exit 1: backup command failed (Fatal: unable to save snapshot: failed to save /a.sql: Fatal: command failed: exit status 3)",
		},
		{
			name: "command not started", op: "backup", code: 1,
			stderr: `{"message_type":"exit_error","code":1,"message":"failed to start command: fork/exec /x: no such file or directory"}`,
			want:   []error{ErrCommandFailed},
		},
		{
			name: "child stderr does not classify", op: "backup", code: 1,
			stderr:  "subprocess mysqldump: connection refused, command failed: timeout\n" + `{"message_type":"exit_error","code":1,"message":"Fatal: something else"}`,
			notWant: []error{ErrCommandFailed, ErrBackend},
		},
		{
			name: "unknown snapshot prefix", op: "dump", code: 1,
			stderr: `{"message_type":"exit_error","code":1,"message":"Fatal: failed to find snapshot: no matching ID found for prefix \"deadbeef\""}`,
			want:   []error{ErrSnapshotNotFound},
		},
		{
			name: "unknown full snapshot id", op: "dump", code: 1,
			stderr: "Load(<snapshot/ffffffffff>, 0, 0) failed: open /r/snapshots/ffff: no such file or directory\nFatal: failed to find snapshot: failed to load snapshot ffffffff: open /r/snapshots/ffff: no such file or directory",
			want:   []error{ErrSnapshotNotFound},
		},
		{
			name: "no latest snapshot", op: "dump", code: 1,
			stderr: "Fatal: failed to find snapshot: snapshot filter (Paths:[] Tags:[] Hosts:[nohost]): no snapshot found",
			want:   []error{ErrSnapshotNotFound},
		},
		{
			name: "path not in snapshot", op: "dump", code: 1,
			stderr:  `Fatal: cannot dump file: path "/nothere.sql" not found in snapshot`,
			want:    []error{ErrPathNotFound},
			notWant: []error{ErrSnapshotNotFound},
		},
		{
			name: "backend down", op: "snapshots", code: 1,
			stderr: `Stat(<config/>) returned error, retrying after 1.3s: Head "http://:***@127.0.0.1:1/x/config": dial tcp 127.0.0.1:1: connect: connection refused
{"message_type":"exit_error","code":1,"message":"Fatal: unable to open config file: Head \"http://127.0.0.1:1/x/config\": dial tcp 127.0.0.1:1: connect: connection refused"}`,
			want: []error{ErrBackend},
		},
		{
			name: "no such host", op: "init", code: 1,
			stderr: "Fatal: create repository at rest:http://nonexistent.invalid:8000/x failed: dial tcp: lookup nonexistent.invalid: no such host",
			want:   []error{ErrBackend},
		},
		{
			name: "signalled by someone else", op: "backup", code: 1,
			stderr:    "\x1b[2Ksignal terminated received, cleaning up\n" + `{"message_type":"exit_error","code":1,"message":"Fatal: unable to save snapshot: context canceled"}`,
			want:      []error{ErrInterrupted},
			wantError: "restic backup: exit 1: interrupted (Fatal: unable to save snapshot: context canceled)",
		},
		{
			name: "interrupted", op: "backup", code: 130,
			want: []error{ErrInterrupted},
		},
		{
			name: "incomplete", op: "backup", code: 3,
			want: []error{ErrIncomplete},
		},
		{
			name: "unclassified", op: "check", code: 1,
			stderr:    "\x1b[2Kerror: pack abc contains 1 errors\nFatal: repository contains errors",
			notWant:   []error{ErrCommandFailed, ErrBackend, ErrSnapshotNotFound},
			wantError: "restic check: exit 1 (Fatal: repository contains errors)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStderrSink(redactor{})
			s.Write([]byte(tt.stderr))
			s.flush()
			e := s.newError(t.Context(), tt.op, tt.code)
			for _, w := range tt.want {
				if !errors.Is(e, w) {
					t.Errorf("error %q does not wrap %q", e, w)
				}
			}
			for _, w := range tt.notWant {
				if errors.Is(e, w) {
					t.Errorf("error %q wraps %q", e, w)
				}
			}
			if tt.wantError != "" && e.Error() != tt.wantError {
				t.Errorf("Error() =\n%s\nwant\n%s", e.Error(), tt.wantError)
			}
			if strings.Contains(e.Error(), "\n") {
				t.Errorf("Error() spans lines: %q", e.Error())
			}
		})
	}
}

func TestClassifyCanceled(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	<-ctx.Done()
	s := newStderrSink(redactor{})
	s.Write([]byte("Stat(<config/>) returned error: dial tcp: connection refused\n"))
	s.flush()
	e := s.newError(ctx, "backup", 1)
	for _, w := range []error{ErrInterrupted, context.DeadlineExceeded, ErrBackend} {
		if !errors.Is(e, w) {
			t.Errorf("error %q does not wrap %q", e, w)
		}
	}
}

func TestRedaction(t *testing.T) {
	repo := &Repo{
		URL: "rest:https://backup:url%2Fpass@rest.example:8000/repo",
		Env: map[string]string{
			"RESTIC_PASSWORD":       "hunter22",
			"AWS_SECRET_ACCESS_KEY": "hunter22-and-more", // contains the other one
			"SHORT":                 "abc",               // too short to redact
			"KEY":                   "-----BEGIN KEY-----\nline-one-of-key\nline-two-of-key\n-----END KEY-----",
		},
	}
	extra := map[string]string{"MYSQL_PWD": "my sql  pass"}
	s := newStderrSink(newRedactor(repo, extra))
	for _, line := range []string{
		"subprocess sh: password hunter22, key hunter22-and-more, abc",
		"subprocess sh: url url%2Fpass url/pass",
		"subprocess sh: line-two-of-key",
		"subprocess sh: my sql\t pass",
		`{"message_type":"exit_error","code":1,"message":"Fatal: login failed for hunte\u0072\u00322 my sql  pass"}`,
	} {
		s.Write([]byte(line + "\n"))
	}
	s.flush()
	e := s.newError(t.Context(), "backup", 1)
	for _, secret := range []string{"hunter22", "-and-more", "url%2Fpass", "url/pass", "line-two-of-key", "my sql"} {
		if strings.Contains(e.Error(), secret) || strings.Contains(e.Stderr, secret) {
			t.Errorf("%q leaked:\n%s\n%s", secret, e.Error(), e.Stderr)
		}
	}
	if !strings.Contains(e.Stderr, "password ***, key ***, abc") {
		t.Errorf("stderr:\n%s", e.Stderr)
	}
	if want := "(Fatal: login failed for *** ***)"; !strings.HasSuffix(e.Error(), want) {
		t.Errorf("Error() = %s, want suffix %s", e.Error(), want)
	}
}

// Stderr kept in an Error stays small however much restic writes.
func TestStderrBounded(t *testing.T) {
	s := newStderrSink(redactor{})
	for range 1000 {
		s.Write([]byte("subprocess mysqldump: " + strings.Repeat("é", 3000) + "\n"))
	}
	s.Write([]byte(strings.Repeat("x", 1<<20) + "\nFatal: the end\n"))
	s.flush()
	e := s.newError(t.Context(), "backup", 1)
	if len(e.Stderr) > maxStderr+maxKeptLine {
		t.Errorf("Stderr is %d bytes", len(e.Stderr))
	}
	if !strings.HasSuffix(e.Stderr, "[long line dropped]\nFatal: the end") {
		t.Errorf("Stderr ends with %q", e.Stderr[len(e.Stderr)-100:])
	}
	if len(e.Error()) > 400 {
		t.Errorf("Error() is %d bytes", len(e.Error()))
	}
}

// restic doubles its wait between retries, with jitter; the streak must
// follow the announced waits, not a fixed window, or a long outage never
// adds up to the budget (the flake behind a failed CI run).
func TestBackendRetryStreak(t *testing.T) {
	retry := func(after string) string {
		return "Save(<data/ab12>) returned error, retrying after " + after + `: Post "http://127.0.0.1:1/r/data/ab12": dial tcp 127.0.0.1:1: connect: connection refused`
	}
	type line struct {
		at   time.Duration
		text string
	}
	tests := []struct {
		name     string
		lines    []line
		wantStop bool
	}{
		{"doubling waits add up", []line{{0, retry("1.5s")}, {1500 * time.Millisecond, retry("3s")}, {4600 * time.Millisecond, retry("5.2s")}}, true},
		{"short outage", []line{{0, retry("1s")}, {1 * time.Second, retry("2s")}}, false},
		{"success ends the streak", []line{{0, retry("1s")}, {1 * time.Second, "Save(<data/ab12>) operation successful after 1 retries"},
			{2500 * time.Millisecond, retry("1s")}, {3500 * time.Millisecond, retry("2s")}}, false},
		{"far apart outages", []line{{0, retry("1s")}, {10 * time.Second, retry("1s")}, {11 * time.Second, retry("2s")}}, false},
		{"unreadable wait still counts", []line{{0, retry("soon")}, {2 * time.Second, retry("soon")}, {4 * time.Second, retry("soon")}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(1e9, 0)
			var now time.Time
			s := newStderrSink(redactor{})
			s.now = func() time.Time { return now }
			s.backendBudget = 3 * time.Second
			stopped := false
			s.onFatal = func() { stopped = true }
			for _, l := range tt.lines {
				now = start.Add(l.at)
				s.Write([]byte(l.text + "\n"))
			}
			if stopped != tt.wantStop {
				t.Fatalf("stopped = %v, want %v (fatal %q)", stopped, tt.wantStop, s.fatal)
			}
			if stopped && !errors.Is(s.newError(t.Context(), "backup", 1), ErrBackendTimeout) {
				t.Error("a stop past the budget is not ErrBackendTimeout")
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"Save(<data/x>) returned error, retrying after 1.234567s: dial tcp: refused": 1234567 * time.Microsecond,
		"Load(<x>) returned error, retrying after 720.5ms: EOF":                      720500 * time.Microsecond,
		"Load(<x>) returned error, retrying after 1m4s: EOF":                         64 * time.Second,
		"no wait here":          0,
		"retrying after -1s: x": 0,
	} {
		if got := retryDelay(in); got != want {
			t.Errorf("retryDelay(%q) = %s, want %s", in, got, want)
		}
	}
}
