package cli

import (
	"bytes"

	"flag"
	"github.com/spf13/cobra"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// run executes the plugin in-process against no cluster.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd := NewRootCmd(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	cmd.SetArgs(append([]string{"--kubeconfig", kc}, args...))
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

// TestCreateDryRunGolden pins what each create command renders for GitOps.
func TestCreateDryRunGolden(t *testing.T) {
	cases := map[string][]string{
		"repository-s3":    {"create", "repository", "s3-repo", "--backend", "s3", "--endpoint", "https://minio.example:9000", "--bucket", "backups", "--prefix", "/prod/mysql", "--region", "eu-west-1", "--secret", "s3-creds", "--allowed-namespaces", "All"},
		"repository-local": {"create", "repository", "local-repo", "--backend", "local", "--path", "/backups/mysql", "--secret", "local-creds"},
		"repository-pvc":   {"create", "repository", "pvc-repo", "--backend", "local", "--pvc", "backups", "--sub-path", "prod/mysql/", "--secret", "local-creds"},
		"repository-rest":  {"create", "repository", "rest-repo", "--backend", "rest", "--url", "http://rest:8000/mysql", "--secret", "rest-creds"},
		"appbinding":       {"create", "appbinding", "mysql", "--service", "mysql:3306", "--secret", "mysql-auth", "--type", "mysql", "--version", "8.0.35"},
		"backupconfig": {"create", "backupconfig", "mysql-nightly", "--target", "appbinding/mysql", "--repository", "s3-repo", "--schedule", "0 2 * * *",
			"--keep-last", "7", "--keep-daily", "30", "--prune", "--param", "args=--databases shop", "--backup-history-limit", "3", "--session-timeout", "2h",
			"--pushgateway", "http://pushgateway.monitoring:9091", "--image", "registry.example/stash-agent:1.0"},
		"agent-apply": {"agent", "apply", "--target", "appbinding/mysql"},
		"restore":     {"restore", "--repository", "s3-repo", "--target", "appbinding/mysql-new", "--at", "2026-11-20T02:00:00Z"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			out, stderr, err := run(t, append([]string{"-n", "golden"}, append(args, "--dry-run=client", "-o", "yaml")...)...)
			if err != nil {
				t.Fatalf("%v: %v\n%s", args, err, stderr)
			}
			path := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run `go test ./pkg/cli -run Golden -update` to create it)", err)
			}
			if out != string(want) {
				t.Errorf("%s differs from %s (rerun with -update if the change is intended):\n%s", name, path, out)
			}
		})
	}
}

// TestBadInputIsRejectedBeforeAnythingIsApplied checks exit code 2 and the message.
func TestBadInputIsRejectedBeforeAnythingIsApplied(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"create", "repository", "r", "--backend", "ftp", "--secret", "s"}, "--backend must be one of"},
		{[]string{"create", "repository", "r", "--backend", "s3", "--endpoint", "x", "--bucket", "ab", "--secret", "s"}, "at least 3 characters"},
		{[]string{"create", "backupconfig", "b", "--target", "appbinding/db", "--repository", "r", "--schedule", "61 * * * *"}, "--schedule"},
		{[]string{"create", "backupconfig", "b", "--target", "appbinding/db", "--repository", "r", "--keep-last", "-1"}, "must not be negative"},
		{[]string{"create", "backupconfig", "b", "--target", "pod/db", "--repository", "r"}, "appbinding/NAME"},
		{[]string{"create", "backupconfig", "b", "--target", "appbinding/db", "--repository", "r", "--task", "nope"}, "unknown --task"},
		{[]string{"create", "backupconfig", "b", "--target", "appbinding/db", "--repository", "r", "--param", "novalue"}, "KEY=VALUE"},
		{[]string{"create", "appbinding", "a", "--service", "mysql", "--secret", "s"}, "NAME:PORT"},
		{[]string{"create", "repository", "r", "--backend", "local", "--path", "/b", "--pvc", "backups", "--secret", "s"}, "--pvc backups is a PersistentVolumeClaim, --path /b a hostPath"},
		{[]string{"create", "repository", "r", "--backend", "local", "--secret", "s"}, "needs --pvc NAME"},
		{[]string{"create", "repository", "r", "--backend", "local", "--pvc", "Bad_Name", "--secret", "s"}, "not a PersistentVolumeClaim name"},
		{[]string{"create", "repository", "r", "--backend", "local", "--pvc", "backups", "--sub-path", "../other", "--secret", "s"}, "--sub-path"},
		{[]string{"create", "repository", "r", "--backend", "local", "--path", "relative", "--secret", "s"}, "absolute"},
		{[]string{"create", "repository", "r", "--backend", "rest", "--url", "http://r:8000", "--pvc", "backups", "--secret", "s"}, "for --backend local"},
		{[]string{"restore", "--repository", "r", "--target", "appbinding/db", "--at", "yesterday"}, "RFC 3339"},
		{[]string{"install", "--dry-run=maybe"}, "--dry-run must be"},
	}
	for _, c := range cases {
		_, _, err := run(t, c.args...)
		if err == nil || ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v (exit %d), want exit 2 mentioning %q", c.args, err, ExitCode(err), c.want)
		}
	}
}

func TestEveryCommandHasExamples(t *testing.T) {
	root := NewRootCmd(genericiooptions.NewTestIOStreamsDiscard())
	for _, c := range root.Commands() {
		stack := []*cobra.Command{c}
		for len(stack) > 0 {
			cur := stack[0]
			stack = stack[1:]
			stack = append(stack, cur.Commands()...)
			if cur.Runnable() && cur.Example == "" && cur.Name() != "help" && !strings.HasPrefix(cur.CommandPath(), "kubectl-stash completion") && cur.Name() != "__complete" && cur.Name() != "__completeNoDesc" {
				t.Errorf("%q has no examples", cur.CommandPath())
			}
		}
	}
}

// TestHostPathWarns: --path prints, on stderr, that restricted namespaces
// refuse hostPath volumes and what to use instead; --pvc does not.
func TestHostPathWarns(t *testing.T) {
	_, stderr, err := run(t, "-n", "golden", "create", "repository", "r", "--backend", "local", "--path", "/b", "--secret", "s", "--dry-run=client", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"hostPath", "restricted Pod Security Standard", "--pvc"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not say %q:\n%s", w, stderr)
		}
	}
	_, stderr, err = run(t, "-n", "golden", "create", "repository", "r", "--backend", "local", "--pvc", "backups", "--secret", "s", "--dry-run=client", "-o", "yaml")
	if err != nil || stderr != "" {
		t.Errorf("--pvc: %v, stderr %q", err, stderr)
	}
}
