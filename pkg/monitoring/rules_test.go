package monitoring

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The committed files are what the rules render today.
func TestManifestsAreCurrent(t *testing.T) {
	for name, render := range map[string]func() ([]byte, error){
		RuleFileName: RuleFile, PrometheusRuleName: PrometheusRule, DashboardName: Dashboard, DashboardConfigMapName: DashboardConfigMap,
	} {
		want, err := render()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "..", "manifests", "monitoring", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("manifests/monitoring/%s is out of date (%v): run `make generate` and commit", name, err)
		}
	}
}

// Every alert has a runbook section in docs/monitoring.md under its name,
// which its runbook_url points to.
func TestEveryAlertHasARunbook(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "monitoring.md"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range Groups() {
		for _, r := range g.Rules {
			if seen[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			seen[r.Alert] = true
			section := regexp.MustCompile(`(?s)\n### ` + r.Alert + `\n(.*?)(\n### |\z)`).FindSubmatch(doc)
			if section == nil {
				t.Errorf("docs/monitoring.md has no runbook section `### %s`", r.Alert)
				continue
			}
			// What it means, then the first three things to check.
			if body := string(section[1]); !strings.Contains(body, "\n1. ") || !strings.Contains(body, "\n2. ") || !strings.Contains(body, "\n3. ") {
				t.Errorf("runbook %s lacks three numbered steps", r.Alert)
			}
			if r.Severity != "critical" && r.Severity != "warning" {
				t.Errorf("alert %s: severity %q", r.Alert, r.Severity)
			}
		}
	}
}
