// Command genmonitoring writes the alert rules and the dashboard of pkg/monitoring into
// manifests/monitoring (`make generate`).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubectl-stash/kubectl-stash/pkg/monitoring"
)

func main() {
	dir := "manifests/monitoring"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	for name, render := range map[string]func() ([]byte, error){
		monitoring.RuleFileName:           monitoring.RuleFile,
		monitoring.PrometheusRuleName:     monitoring.PrometheusRule,
		monitoring.DashboardName:          monitoring.Dashboard,
		monitoring.DashboardConfigMapName: monitoring.DashboardConfigMap,
	} {
		b, err := render()
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "genmonitoring:", err)
			os.Exit(1)
		}
	}
}
