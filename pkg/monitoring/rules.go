// Package monitoring holds the alert rules built on the metrics the agent
// pushes and serves (pkg/metrics), and renders them as a plain Prometheus
// rules file and as a Prometheus Operator PrometheusRule. The rules use
// Stash's legacy metric names, so queries written for Stash keep working.
package monitoring

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// Rule is one alert. Runbook is the anchor of its section in
// docs/monitoring.md.
type Rule struct {
	Alert       string
	Expr        string
	For         string
	Severity    string
	Summary     string
	Description string
}

// Group is a named list of rules evaluated together.
type Group struct {
	Name  string
	Rules []Rule
}

// RunbookBase is where the runbooks live; each alert's runbook_url is this
// plus its name in lower case.
const RunbookBase = "https://github.com/kubectl-stash/kubectl-stash/blob/main/docs/monitoring.md#"

// by is the aggregation that drops the Pushgateway's job and instance.
const by = "max by (namespace, invoker_name) "

// Groups are the rules shipped.
func Groups() []Group {
	return []Group{{
		Name: "stash-backups",
		Rules: []Rule{
			{
				Alert:       "StashBackupSessionFailed",
				Expr:        by + `(stash_backup_session_success{invoker_kind="BackupConfiguration"}) == 0`,
				Severity:    "critical",
				Summary:     "The last backup of {{ $labels.namespace }}/{{ $labels.invoker_name }} failed",
				Description: "BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }}: its last BackupSession failed, so the newest restorable backup is older than planned. `kubectl stash status -n {{ $labels.namespace }}` names the session and why.",
			},
			{
				Alert: "StashNoBackupSessionForTooLong",
				// A config none of whose backups ever succeeded counts from
				// its creation.
				Expr: `time() - (` + by + `(stash_backup_last_success_time_seconds{invoker_kind="BackupConfiguration"})` +
					` or ` + by + `(stash_backupconfiguration_creation_time_seconds))` +
					` > on (namespace, invoker_name) ` + by + `(stash_backup_max_age_seconds)`,
				For:         "5m",
				Severity:    "critical",
				Summary:     "No successful backup of {{ $labels.namespace }}/{{ $labels.invoker_name }} for {{ $value | humanizeDuration }}",
				Description: "The last successful backup of BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }} (or its creation, when none has succeeded) is older than its schedule allows (stash_backup_max_age_seconds, the widest gap between slots plus a quarter, or the annotation stash.appscode.com/alert-backup-max-age).",
			},
			{
				Alert:       "StashBackupConfigurationInvalid",
				Expr:        by + `(stash_backupconfiguration_invalid) == 1`,
				For:         "5m",
				Severity:    "critical",
				Summary:     "BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }} is invalid: no backup runs",
				Description: "The agent refuses the spec of BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }} (a schedule, hook, retention policy or annotation it cannot honour), so none of its backups runs and no overdue alert can fire for it. Its ValidationPassed condition says what to fix.",
			},
			{
				Alert: "StashBackupSessionRunningTooLong",
				Expr: `time() - ` + by + `(stash_backup_session_start_time_seconds{invoker_kind="BackupConfiguration"})` +
					` > on (namespace, invoker_name) (clamp_min(3 * ` + by + `(stash_backup_session_duration_seconds{invoker_kind="BackupConfiguration"}), 1800)` +
					` or 0 * ` + by + `(stash_backup_session_start_time_seconds{invoker_kind="BackupConfiguration"}) + 7200)` +
					` unless on (namespace, invoker_name) ` + by + `(stash_backup_session_completion_time_seconds{invoker_kind="BackupConfiguration"})` +
					` >= on (namespace, invoker_name) ` + by + `(stash_backup_session_start_time_seconds{invoker_kind="BackupConfiguration"})`,
				Severity:    "warning",
				Summary:     "The backup of {{ $labels.namespace }}/{{ $labels.invoker_name }} has been running for {{ $value | humanizeDuration }}",
				Description: "A BackupSession of BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }} has run more than three times as long as the last one (at least 30 minutes; 2 hours when there was none): the dump or the upload may be stuck, and the next slots are skipped while it runs.",
			},
			{
				Alert:       "StashRestoreSessionFailed",
				Expr:        by + `(stash_restore_session_success) == 0 and on (namespace, invoker_name) (time() - ` + by + `(stash_restore_session_completion_time_seconds) < 86400)`,
				Severity:    "critical",
				Summary:     "Restore {{ $labels.namespace }}/{{ $labels.invoker_name }} failed",
				Description: "RestoreSession {{ $labels.namespace }}/{{ $labels.invoker_name }} failed in the last day; its status says what state the database was left in.",
			},
			{
				Alert: "StashRestoreSessionRunningTooLong",
				Expr: `time() - ` + by + `(stash_restore_session_start_time_seconds) > 14400` +
					` unless on (namespace, invoker_name) ` + by + `(stash_restore_session_completion_time_seconds)` +
					` >= on (namespace, invoker_name) ` + by + `(stash_restore_session_start_time_seconds)`,
				Severity:    "warning",
				Summary:     "Restore {{ $labels.namespace }}/{{ $labels.invoker_name }} has been running for {{ $value | humanizeDuration }}",
				Description: "RestoreSession {{ $labels.namespace }}/{{ $labels.invoker_name }} has run for more than 4 hours. Compare with the recovery time the last verification measured (`kubectl stash status -o wide`).",
			},
		},
	}, {
		Name: "stash-repositories",
		Rules: []Rule{
			{
				Alert:       "StashRepositoryCorrupted",
				Expr:        `max by (namespace, name) (stash_repository_integrity) == 0`,
				Severity:    "critical",
				Summary:     "Repository {{ $labels.namespace }}/{{ $labels.name }} failed its integrity check",
				Description: "The last `kubectl stash check` or verification of Repository {{ $labels.namespace }}/{{ $labels.name }} found damaged or missing data: backups in it may not restore.",
			},
			{
				Alert: "StashRepositoryGrowingFast",
				Expr: `max by (namespace, name) (stash_repository_size_bytes) > 1.5 * max by (namespace, name) (stash_repository_size_bytes offset 1d)` +
					` and max by (namespace, name) (stash_repository_size_bytes) - max by (namespace, name) (stash_repository_size_bytes offset 1d) > 1073741824`,
				For:         "1h",
				Severity:    "warning",
				Summary:     "Repository {{ $labels.namespace }}/{{ $labels.name }} grew by more than half in a day",
				Description: "Repository {{ $labels.namespace }}/{{ $labels.name }} grew by more than 50% and more than 1 GiB in 24 hours: new data that does not deduplicate, a retention policy that stopped pruning, or a backup of the wrong thing.",
			},
		},
	}, {
		Name: "stash-verification",
		Rules: []Rule{
			{
				Alert:       "StashVerificationFailed",
				Expr:        by + `(stash_verification_success) == 0`,
				Severity:    "critical",
				Summary:     "The last verification of {{ $labels.namespace }}/{{ $labels.invoker_name }} failed",
				Description: "A backup of BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }} was restored and did not match what was backed up, or could not be restored: the backups are not proven restorable.",
			},
			{
				Alert: "StashVerificationOverdue",
				Expr: `time() - ` + by + `(stash_verification_last_time_seconds)` +
					` > on (namespace, invoker_name) ` + by + `(stash_verification_max_age_seconds)`,
				For:         "5m",
				Severity:    "warning",
				Summary:     "No verification of {{ $labels.namespace }}/{{ $labels.invoker_name }} for {{ $value | humanizeDuration }}",
				Description: "BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }} asks for verifications (stash.appscode.com/verify-schedule or verify-every), and none ended within the bound its annotations give (stash_verification_max_age_seconds): the newer backups are not proven restorable.",
			},
		},
	}, {
		Name: "stash-pitr",
		Rules: []Rule{
			{
				Alert: "StashPITRArchiveLagging",
				Expr: `time() - ` + by + `(stash_pitr_recoverable_until_time_seconds)` +
					` > on (namespace, invoker_name) 2 * ` + by + `(stash_pitr_archive_interval_seconds) + 60`,
				For:         "2m",
				Severity:    "warning",
				Summary:     "The binlog archive of {{ $labels.namespace }}/{{ $labels.invoker_name }} is {{ $value | humanizeDuration }} behind",
				Description: "The point-in-time archive of BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }} covers the database only up to that long ago, more than twice its interval: a restore to now would lose the writes since.",
			},
			{
				Alert:       "StashPITRGap",
				Expr:        by + `(stash_pitr_window_gap) == 1`,
				Severity:    "critical",
				Summary:     "The binlog archive of {{ $labels.namespace }}/{{ $labels.invoker_name }} has a gap",
				Description: "The restorable window of BackupConfiguration {{ $labels.namespace }}/{{ $labels.invoker_name }} has a stretch the archive does not cover (purged binlogs, a server that changed, binlog switched off); restores into it are refused until the next full backup closes it.",
			},
		},
	}, {
		Name: "stash-agents",
		Rules: []Rule{
			{
				Alert:       "StashAgentDown",
				Expr:        `up{job="stash-agent"} == 0`,
				For:         "5m",
				Severity:    "critical",
				Summary:     "The stash agent {{ $labels.namespace }}/{{ $labels.pod }} does not answer",
				Description: "Prometheus cannot scrape the agent's /metrics: while it is down no backup of its database runs, and nothing else alerts until the backups are overdue.",
			},
		},
	}}
}

// The files in manifests/monitoring.
const (
	RuleFileName       = "stash-alerts.rules.yaml"
	PrometheusRuleName = "prometheusrule.yaml"
)

// RuleFile is the plain Prometheus rules file (rule_files:).
func RuleFile() ([]byte, error) {
	return render(map[string]any{"groups": groupsYAML()}, "# Alert rules for kubectl stash. Generated from pkg/monitoring by `make generate`; runbooks: docs/monitoring.md.\n")
}

// PrometheusRule is the same rules as a Prometheus Operator object; its
// namespace is the one it is applied to.
func PrometheusRule() ([]byte, error) {
	obj := map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "PrometheusRule",
		"metadata": map[string]any{
			"name":   "stash-alerts",
			"labels": map[string]any{"app.kubernetes.io/name": "kubectl-stash", "app.kubernetes.io/component": "alerts"},
		},
		"spec": map[string]any{"groups": groupsYAML()},
	}
	return render(obj, "# Alert rules for kubectl stash as a PrometheusRule. Generated from pkg/monitoring by `make generate`; runbooks: docs/monitoring.md.\n")
}

func groupsYAML() []any {
	var out []any
	for _, g := range Groups() {
		var rules []any
		for _, r := range g.Rules {
			m := map[string]any{
				"alert":  r.Alert,
				"expr":   r.Expr,
				"labels": map[string]any{"severity": r.Severity},
				"annotations": map[string]any{
					"summary":     r.Summary,
					"description": r.Description,
					"runbook_url": RunbookBase + strings.ToLower(r.Alert),
				},
			}
			if r.For != "" {
				m["for"] = r.For
			}
			rules = append(rules, m)
		}
		out = append(out, map[string]any{"name": g.Name, "rules": rules})
	}
	return out
}

func render(v any, header string) ([]byte, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("render the alert rules: %w", err)
	}
	return append([]byte(header), b...), nil
}
