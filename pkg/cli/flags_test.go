package cli

import (
	"strings"
	"testing"
)

// Each flag name means one thing: --timeout is how long a command waits;
// a session's time limit is --session-timeout. create backupconfig keeps
// --timeout, hidden and deprecated, with its old meaning.
func TestSessionTimeoutAndTheDeprecatedTimeout(t *testing.T) {
	base := []string{"-n", "golden", "create", "backupconfig", "b", "--target", "appbinding/db", "--repository", "r", "--dry-run=client", "-o", "yaml"}
	out, stderr, err := run(t, append(base, "--session-timeout", "90m")...)
	if err != nil || !strings.Contains(out, "timeOut: 90m") || stderr != "" {
		t.Errorf("--session-timeout: %v, stderr %q:\n%s", err, stderr, out)
	}
	out, stderr, err = run(t, append(base, "--timeout", "90m")...)
	if err != nil || !strings.Contains(out, "timeOut: 90m") || !strings.Contains(stderr, "--timeout has been deprecated, use --session-timeout") {
		t.Errorf("deprecated --timeout: %v, stderr %q:\n%s", err, stderr, out)
	}
	help, _, _ := run(t, "create", "backupconfig", "--help")
	if strings.Contains(help, "--timeout") || !strings.Contains(help, "--session-timeout") {
		t.Errorf("help shows --timeout or lacks --session-timeout:\n%s", help)
	}
	_, _, err = run(t, append(base, "--session-timeout", "soon")...)
	if ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), "--session-timeout") {
		t.Errorf("bad --session-timeout: %v", err)
	}
}

// -o is an output format everywhere: download refuses it, naming --to-file,
// before connecting to anything.
func TestDownloadRefusesOutputFlag(t *testing.T) {
	for _, args := range [][]string{
		{"download", "repo", "--snapshot", "latest", "-o", "json"},
		{"download", "repo", "--snapshot", "latest", "--output", "dump.sql"},
	} {
		_, _, err := run(t, args...)
		if ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), "use --to-file") {
			t.Errorf("%v: %v (exit %d), want exit 2 naming --to-file", args, err, ExitCode(err))
		}
	}
	help, _, _ := run(t, "download", "--help")
	if !strings.Contains(help, "--to-file") || strings.Contains(help, "-o, --output") {
		t.Errorf("download help:\n%s", help)
	}
}

func TestAgentFlagsAreValidated(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"agent", "apply", "--target", "appbinding/db", "--hook-exec-pod", "Not_A_Pod"}, "--hook-exec-pod"},
		{[]string{"create", "backupconfig", "b", "--target", "appbinding/db", "--repository", "r", "--hook-exec-pod", "a b"}, "--hook-exec-pod"},
		{[]string{"restore", "--repository", "r", "--target", "appbinding/db", "--hook-exec-pod", "-x"}, "--hook-exec-pod"},
		{[]string{"agent", "apply", "--target", "appbinding/db", "--repository", "a/b/c"}, "--repository"},
		{[]string{"agent", "apply", "--target", "appbinding/db", "--repository", "/r"}, "--repository"},
		{[]string{"agent", "apply", "--target", "appbinding/db", "--repository", "ns/"}, "--repository"},
		{[]string{"status", "-o", "table"}, "-o"},
		{[]string{"snapshots", "repo", "-o", "wide"}, "-o"},
	}
	for _, c := range cases {
		_, _, err := run(t, append([]string{"-n", "golden"}, append(c.args, "--dry-run=client")...)...)
		if strings.HasPrefix(c.args[0], "status") || c.args[0] == "snapshots" {
			_, _, err = run(t, append([]string{"-n", "golden"}, c.args...)...)
		}
		if ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v (exit %d), want exit 2 mentioning %s", c.args, err, ExitCode(err), c.want)
		}
	}
}

// --hook-exec-pod renders the one exec rule and the agent's flag.
func TestHookExecPodRendered(t *testing.T) {
	out, stderr, err := run(t, "-n", "golden", "agent", "apply", "--target", "appbinding/db", "--hook-exec-pod", "mysql-0", "--dry-run=client", "-o", "yaml")
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	for _, want := range []string{"- pods/exec", "- mysql-0", "--hook-exec-pod=mysql-0"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered agent lacks %q:\n%s", want, out)
		}
	}
}

// A point-in-time restore's choices reach the RestoreSession as the
// annotations the agent reads; --read-only only when given, so the agent's
// default (held for a replay) stays in one place.
func TestRestorePointFlags(t *testing.T) {
	base := []string{"-n", "golden", "restore", "--repository", "r", "--target", "appbinding/db", "--dry-run=client", "-o", "yaml"}
	out, _, err := run(t, append(base, "--at", "latest", "--allow-gap")...)
	if err != nil || !strings.Contains(out, "stash.appscode.com/restore-allow-gap: \"true\"") || strings.Contains(out, "restore-read-only") {
		t.Errorf("--allow-gap: %v:\n%s", err, out)
	}
	out, _, err = run(t, append(base, "--at", "latest", "--read-only=false")...)
	if err != nil || !strings.Contains(out, "stash.appscode.com/restore-read-only: \"false\"") || !strings.Contains(out, "stash.appscode.com/restore-at: latest") {
		t.Errorf("--read-only=false: %v:\n%s", err, out)
	}
	out, _, err = run(t, append(base, "--read-only")...)
	if err != nil || !strings.Contains(out, "stash.appscode.com/restore-read-only: \"true\"") {
		t.Errorf("--read-only on a plain restore: %v:\n%s", err, out)
	}
	if _, _, err = run(t, append(base, "--allow-gap")...); ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), "--allow-gap needs --at or --to-gtid") {
		t.Errorf("--allow-gap alone: %v", err)
	}
}
