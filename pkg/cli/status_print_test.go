package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The status table prints through cli-runtime's table printer: one line per
// config with its health and the reason, the last good backup, the next
// slot, the recovery point, the window and the last verification; -o wide
// adds the agent, the repository, the window's ends, the next slot's time,
// the last snapshot, the agent pod, who claimed the last session and the
// target.
func TestStatusTableAndWide(t *testing.T) {
	now := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	next := now.Add(time.Hour)
	last := now.Add(-10 * time.Minute)
	recent := now.Add(-20 * time.Second)
	rows := []ConfigStatus{{
		Namespace: "prod", Name: "nightly", Target: "appbinding/db", Schedule: "0 3 * * *", LastSession: "nightly-abc", LastPhase: "Succeeded",
		LastTime: &last, LastSuccess: &last, NextSchedule: &next, Agent: "1/1 ready, leader stash-agent-db-7d9-x", AgentPod: "stash-agent-db-7d9-x",
		AgentHealthy: true, Repository: "s3-repo", RepositorySize: "1.2 GiB", SnapshotCount: 3, LastSnapshot: "4bf6100f", ClaimedBy: "stash-agent-db-7d9-x",
		PITR: true, RecoverableFrom: &last, RecoverableUntil: &recent, RecoveryPoint: &recent,
		LastVerified: &last, RTO: "41s", Health: HealthOK,
	}, {
		Namespace: "prod", Name: "adhoc", Target: "appbinding/db", Agent: "missing", Repository: "s3-repo", Problems: []string{"no agent Deployment"},
		Health: HealthNoAgent, Reason: "no agent", SnapshotCount: 2, VerificationPhase: "Failed", LastVerified: &last,
	}}
	print := func(output string, all bool) string {
		var out bytes.Buffer
		o := &StatusOptions{Output: output, AllNamespaces: all, Now: func() time.Time { return now }}
		if err := o.Print(&out, rows); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	def := print("", false)
	lines := strings.Split(def, "\n")
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "HEALTH NAME LAST SESSION LAST SUCCESS NEXT RECOVERY POINT WINDOW VERIFIED REASON" {
		t.Errorf("header: %q", lines[0])
	}
	for _, want := range []string{"ok", "nightly", "Succeeded 10m ago", "in 60m", "20s ago", "PITR 9m40s", "10m ago, RTO 41s",
		"no-agent", "no agent", "trigger-only", "2 snapshots", "failed 10m ago", "prod/adhoc: no agent Deployment"} {
		if !strings.Contains(def, want) {
			t.Errorf("table lacks %q:\n%s", want, def)
		}
	}
	if strings.Contains(def, "4bf6100f") || strings.Contains(def, "LAST SNAPSHOT") {
		t.Errorf("the default table has wide columns:\n%s", def)
	}
	wide := print("wide", false)
	for _, want := range []string{"RECOVERABLE FROM", "2026-12-01T01:50:00Z", "AGENT", "REPOSITORY", "1.2 GiB", "SNAPSHOTS", "NEXT SCHEDULE", "LAST SNAPSHOT", "AGENT POD", "CLAIMED BY", "TARGET", "2026-12-01T03:00:00Z", "4bf6100f", "appbinding/db"} {
		if !strings.Contains(wide, want) {
			t.Errorf("-o wide lacks %q:\n%s", want, wide)
		}
	}
	if all := print("", true); !strings.HasPrefix(strings.Join(strings.Fields(all), " "), "HEALTH NAMESPACE NAME") || !strings.Contains(all, "prod") {
		t.Errorf("-A table:\n%s", all)
	}
}
