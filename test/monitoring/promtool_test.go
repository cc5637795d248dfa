// Package monitoring tests the shipped alert rules with promtool: they
// parse, and they fire (and stay quiet) on series shaped like what the
// agent pushes.
package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kubectl-stash/kubectl-stash/pkg/monitoring"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin := filepath.Join(testenv.RepoRoot(), "bin", "promtool")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("promtool missing: run `make tools` (%v)", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Join(testenv.RepoRoot(), "test", "monitoring")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	t.Logf("promtool %v:\n%s", args, out)
}

func TestRulesParse(t *testing.T) {
	promtool(t, "check", "rules", "../../manifests/monitoring/stash-alerts.rules.yaml")
}

func TestRulesFireOnPushedSeries(t *testing.T) {
	promtool(t, "test", "rules", "alerts_test.yaml")
}

// Every query of the rules and the dashboard is PromQL that Prometheus
// parses; pkg/monitoring's tests check what it reads is emitted.
func TestQueriesParse(t *testing.T) {
	for _, q := range monitoring.Queries() {
		t.Run(q.Where, func(t *testing.T) { promtool(t, "--experimental", "promql", "format", q.Expr) })
	}
}
