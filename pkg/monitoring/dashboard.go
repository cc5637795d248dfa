package monitoring

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Panel is one graph or table of the dashboard; each query is a PromQL
// expression over what the agent pushes, drawn with Legend.
type Panel struct {
	Title, Description string
	Type               string // timeseries, stat, table, state-timeline
	Unit               string // Grafana unit: s, bytes, short, none
	Queries            []string
	Legend             string
	// Instant asks for the value now (tables, stats) and not a range.
	Instant bool
	// Mappings names values (1: "ok", 0: "failed"), for results.
	Mappings map[string]string
	Width    int // of 24 columns; 0: 8
}

// Row is a titled group of panels.
type Row struct {
	Title  string
	Panels []Panel
}

// sel is the selector every invoker panel filters with: the dashboard's
// namespace and config variables.
const sel = `namespace=~"$namespace", invoker_name=~"$config"`

// configSel is sel for BackupConfiguration metrics only (restores carry
// the RestoreSession's name).
const configSel = `invoker_kind="BackupConfiguration", ` + sel

const legend = "{{namespace}}/{{invoker_name}}"

var okFailed = map[string]string{"1": "ok", "0": "failed"}

// Rows are the dashboard's contents, top to bottom.
func Rows() []Row {
	return []Row{{
		Title: "Backups",
		Panels: []Panel{
			{Title: "Last successful backup", Description: "Age of each config's last successful backup, and the age at which it is overdue (the StashNoBackupSessionForTooLong alert).",
				Type: "table", Unit: "s", Instant: true, Legend: legend, Width: 12, Queries: []string{
					`time() - ` + by + `(stash_backup_last_success_time_seconds{` + configSel + `})`,
					by + `(stash_backup_max_age_seconds{` + configSel + `})`,
				}},
			{Title: "Backup results", Description: "Each backup session's result: ok or failed.", Type: "state-timeline", Mappings: okFailed, Legend: legend, Width: 12,
				Queries: []string{by + `(stash_backup_session_success{` + configSel + `})`}},
			{Title: "Backup duration", Type: "timeseries", Unit: "s", Legend: legend,
				Queries: []string{by + `(stash_backup_session_duration_seconds{` + configSel + `})`}},
			{Title: "Backup size", Description: "The dump's size, before deduplication and compression.", Type: "timeseries", Unit: "bytes", Legend: legend,
				Queries: []string{by + `(stash_backup_host_data_size_bytes{` + configSel + `})`}},
			{Title: "New data per backup", Description: "What each backup added to the repository after deduplication and compression.", Type: "timeseries", Unit: "bytes", Legend: legend,
				Queries: []string{by + `(stash_backup_host_data_uploaded_bytes{` + configSel + `})`}},
		},
	}, {
		Title: "Repositories",
		Panels: []Panel{
			{Title: "Repository size", Type: "timeseries", Unit: "bytes", Legend: "{{namespace}}/{{name}}",
				Queries: []string{`max by (namespace, name) (stash_repository_size_bytes{namespace=~"$namespace"})`}},
			{Title: "Snapshots", Type: "timeseries", Unit: "short", Legend: "{{namespace}}/{{name}}",
				Queries: []string{`max by (namespace, name) (stash_repository_snapshot_count{namespace=~"$namespace"})`}},
			{Title: "Integrity", Description: "The verdict of the last `kubectl stash check` or verification; no value before either.", Type: "state-timeline", Mappings: okFailed, Legend: "{{namespace}}/{{name}}",
				Queries: []string{`max by (namespace, name) (stash_repository_integrity{namespace=~"$namespace"})`}},
		},
	}, {
		Title: "Restores",
		Panels: []Panel{
			{Title: "Restore duration", Description: "Each RestoreSession's duration.", Type: "timeseries", Unit: "s", Legend: legend, Width: 12,
				Queries: []string{by + `(stash_restore_session_duration_seconds{namespace=~"$namespace"})`}},
			{Title: "Restore results", Type: "state-timeline", Mappings: okFailed, Legend: legend, Width: 12,
				Queries: []string{by + `(stash_restore_session_success{namespace=~"$namespace"})`}},
		},
	}, {
		Title: "Point-in-time recovery",
		Panels: []Panel{
			{Title: "Restorable window", Description: "How far back a point-in-time restore can go: from the oldest full backup the binlog archive replays from to its end.", Type: "timeseries", Unit: "s", Legend: legend,
				Queries: []string{by + `(stash_pitr_recoverable_until_time_seconds{` + sel + `}) - ` + by + `(stash_pitr_recoverable_from_time_seconds{` + sel + `})`}},
			{Title: "Recovery point now", Description: "How much would be lost by a restore now: the age of the archive's end.", Type: "timeseries", Unit: "s", Legend: legend,
				Queries: []string{`time() - ` + by + `(stash_pitr_recoverable_until_time_seconds{` + sel + `})`}},
			{Title: "Gap in the window", Description: "failed: the window has a stretch the archive does not cover; restores into it are refused.", Type: "state-timeline", Legend: legend,
				Mappings: map[string]string{"0": "ok", "1": "failed"},
				Queries:  []string{by + `(stash_pitr_window_gap{` + sel + `})`}},
		},
	}, {
		Title: "Verification",
		Panels: []Panel{
			{Title: "Verification results", Description: "Whether the last verification restored a backup and found it equal to what was backed up.", Type: "state-timeline", Mappings: okFailed, Legend: legend,
				Queries: []string{by + `(stash_verification_success{` + sel + `})`}},
			{Title: "Measured recovery time", Description: "The restore time of each verification: the recovery time objective, measured.", Type: "timeseries", Unit: "s", Legend: legend,
				Queries: []string{by + `(stash_verification_restore_duration_seconds{` + sel + `})`}},
			{Title: "Last verification", Description: "Age of the last verification, the age at which it is overdue, and the differences it found.", Type: "table", Unit: "s", Instant: true, Legend: legend,
				Queries: []string{
					`time() - ` + by + `(stash_verification_last_time_seconds{` + sel + `})`,
					by + `(stash_verification_max_age_seconds{` + sel + `})`,
					by + `(stash_verification_mismatches{` + sel + `})`,
				}},
		},
	}}
}

// The dashboard's variables: each a label's values on a metric every
// config pushes.
const (
	namespaceVar = `label_values(stash_backup_max_age_seconds, namespace)`
	configVar    = `label_values(stash_backup_max_age_seconds{namespace=~"$namespace"}, invoker_name)`
)

// The dashboard files in manifests/monitoring.
const (
	DashboardName          = "grafana-dashboard.json"
	DashboardConfigMapName = "grafana-dashboard-configmap.yaml"
	dashboardUID           = "kubectl-stash"
)

// Dashboard is the Grafana dashboard (JSON model, schema 39), with a
// Prometheus data source variable so it imports anywhere.
func Dashboard() ([]byte, error) {
	ds := map[string]any{"type": "prometheus", "uid": "${datasource}"}
	variable := func(name, label, query string) map[string]any {
		return map[string]any{
			"name": name, "label": label, "type": "query", "datasource": ds,
			"query":      map[string]any{"query": query, "refId": name},
			"definition": query, "refresh": 2, "includeAll": true, "multi": true, "allValue": ".*",
			"current": map[string]any{"text": "All", "value": "$__all"}, "sort": 1,
		}
	}
	var panels []any
	id, y := 1, 0
	for _, r := range Rows() {
		panels = append(panels, map[string]any{"type": "row", "title": r.Title, "id": id, "collapsed": false,
			"gridPos": map[string]any{"h": 1, "w": 24, "x": 0, "y": y}, "panels": []any{}})
		id++
		y++
		x := 0
		for _, p := range r.Panels {
			w := p.Width
			if w == 0 {
				w = 8
			}
			if x+w > 24 {
				x, y = 0, y+8
			}
			panels = append(panels, panelJSON(p, id, x, y, w, ds))
			id++
			x += w
		}
		y += 8
	}
	d := map[string]any{
		"title": "kubectl stash", "uid": dashboardUID, "schemaVersion": 39, "version": 1,
		"description": "Backups, restores, repositories, point-in-time recovery and verification of MySQL and MariaDB by kubectl stash, from the metrics its agents push (Stash's names).",
		"tags":        []string{"kubectl-stash", "stash", "backup", "mysql", "mariadb"},
		"time":        map[string]any{"from": "now-7d", "to": "now"}, "refresh": "1m", "editable": true,
		"templating": map[string]any{"list": []any{
			map[string]any{"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
			variable("namespace", "Namespace", namespaceVar),
			variable("config", "BackupConfiguration", configVar),
		}},
		"panels": panels,
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render the dashboard: %w", err)
	}
	return append(b, '\n'), nil
}

func panelJSON(p Panel, id, x, y, w int, ds map[string]any) map[string]any {
	var targets []any
	for i, q := range p.Queries {
		t := map[string]any{"expr": q, "legendFormat": p.Legend, "refId": string(rune('A' + i)), "datasource": ds}
		if p.Instant {
			t["instant"], t["range"], t["format"] = true, false, "table"
		}
		targets = append(targets, t)
	}
	defaults := map[string]any{}
	if p.Unit != "" {
		defaults["unit"] = p.Unit
	}
	if len(p.Mappings) > 0 {
		opts := map[string]any{}
		for v, text := range p.Mappings {
			color := "green"
			if text != "ok" {
				color = "red"
			}
			opts[v] = map[string]any{"text": text, "color": color}
		}
		defaults["mappings"] = []any{map[string]any{"type": "value", "options": opts}}
		defaults["color"] = map[string]any{"mode": "fixed"}
	}
	out := map[string]any{
		"id": id, "type": p.Type, "title": p.Title, "datasource": ds, "targets": targets,
		"gridPos":     map[string]any{"h": 8, "w": w, "x": x, "y": y},
		"fieldConfig": map[string]any{"defaults": defaults, "overrides": []any{}},
	}
	if p.Description != "" {
		out["description"] = p.Description
	}
	if p.Type == "table" && len(p.Queries) > 1 {
		// One row per config, a column per query.
		out["transformations"] = []any{
			map[string]any{"id": "merge", "options": map[string]any{}},
			map[string]any{"id": "organize", "options": map[string]any{"excludeByName": map[string]any{"Time": true}}},
		}
	}
	return out
}

// DashboardConfigMap wraps the dashboard for Grafana's dashboard sidecar
// (label grafana_dashboard: "1", as kube-prometheus-stack watches).
func DashboardConfigMap() ([]byte, error) {
	d, err := Dashboard()
	if err != nil {
		return nil, err
	}
	obj := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{
			"name":   "stash-grafana-dashboard",
			"labels": map[string]any{"grafana_dashboard": "1", "app.kubernetes.io/name": "kubectl-stash", "app.kubernetes.io/component": "dashboard"},
		},
		"data": map[string]any{"kubectl-stash.json": string(d)},
	}
	return render(obj, "# The kubectl stash Grafana dashboard for Grafana's dashboard sidecar. Generated from pkg/monitoring by `make generate`.\n")
}

// Query is one PromQL expression the project ships, and where.
type Query struct {
	Where string // "alert StashX", "panel Backup size", "variable namespace"
	Expr  string
	// Labels are those its text uses besides the expression's: the
	// alert's templates, the panel's legend.
	Labels []string
}

// Queries are every expression in the rules and the dashboard.
func Queries() []Query {
	var out []Query
	for _, g := range Groups() {
		for _, r := range g.Rules {
			out = append(out, Query{Where: "alert " + r.Alert, Expr: r.Expr, Labels: templateLabels(r.Summary + r.Description)})
		}
	}
	for _, row := range Rows() {
		for _, p := range row.Panels {
			for _, q := range p.Queries {
				out = append(out, Query{Where: "panel " + p.Title, Expr: q, Labels: templateLabels(p.Legend)})
			}
		}
	}
	for name, q := range map[string]string{"namespace": namespaceVar, "config": configVar} {
		// label_values(METRIC{...}, LABEL): the label must be on the metric.
		inner := strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")")
		i := strings.LastIndex(inner, ",")
		out = append(out, Query{Where: "variable " + name, Expr: inner[:i], Labels: []string{strings.TrimSpace(inner[i+1:])}})
	}
	return out
}
