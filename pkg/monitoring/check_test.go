package monitoring

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/kubectl-stash/kubectl-stash/pkg/metrics"
)

func TestUses(t *testing.T) {
	m, l := Uses(`time() - max by (namespace, invoker_name) (stash_a{invoker_kind="B", x=~"$y"}) > on (namespace) group_left() stash_b{job!="{a,b}"} unless stash_a`)
	if want := []string{"stash_a", "stash_b"}; !slices.Equal(m, want) {
		t.Errorf("metrics %v, want %v", m, want)
	}
	if want := []string{"invoker_kind", "invoker_name", "job", "namespace", "x"}; !slices.Equal(l, want) {
		t.Errorf("labels %v, want %v", l, want)
	}
	if got := templateLabels("{{ $labels.namespace }}/{{$labels.name}} {{invoker_name}} {{ $value | humanize }}"); !slices.Equal(got, []string{"invoker_name", "name", "namespace"}) {
		t.Errorf("template labels %v", got)
	}
}

// exposition is what the agent emits for a session of each kind, every
// optional field set, in the text format.
func exposition(t *testing.T, drop string) []byte {
	t.Helper()
	now := time.Unix(1_800_000_000, 0)
	c := metrics.Common{InvokerKind: "BackupConfiguration", InvokerName: "nightly", Namespace: "shop", Driver: "Restic", Repository: "repo"}
	rc := c
	rc.InvokerKind, rc.InvokerName = "RestoreSession", "undo"
	ok := true
	regs := []*prometheus.Registry{
		metrics.BackupRegistry(metrics.BackupResult{Common: c, Hostname: "host-0", Success: true, Start: now.Add(-time.Minute), End: now, LastSuccess: now}),
		metrics.RestoreRegistry(metrics.RestoreResult{Common: rc, Hostname: "host-0", Success: true, Start: now.Add(-time.Minute), End: now}),
		metrics.RepositoryRegistry(metrics.RepositoryResult{Common: c, Integrity: &ok, SizeBytes: 1}),
		metrics.PITRRegistry(metrics.PITRResult{Common: c, LastEventTime: now, RecoverableFrom: now.Add(-time.Hour), RecoverableUntil: now, Interval: time.Minute}),
		metrics.ConfigRegistry(metrics.ConfigResult{Common: c, MaxAge: time.Hour, VerifyMaxAge: 24 * time.Hour, Created: now.Add(-48 * time.Hour)}),
		metrics.VerificationRegistry(metrics.VerificationResult{Common: c, Succeeded: true, End: now}),
	}
	var buf bytes.Buffer
	for _, r := range regs {
		mfs, err := r.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == drop {
				continue
			}
			if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
				t.Fatal(err)
			}
		}
	}
	return buf.Bytes()
}

func all(string) bool { return true }

// Every alert and panel reads metrics and labels the agent emits.
func TestQueriesUseEmittedMetrics(t *testing.T) {
	problems, err := Check(exposition(t, ""), all)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if n := len(Queries()); n < 20 {
		t.Errorf("only %d queries found", n)
	}
}

// The check notices a metric that is not emitted, and a label not on it.
func TestCheckFindsWhatIsMissing(t *testing.T) {
	problems, err := Check(exposition(t, "stash_verification_max_age_seconds"), all)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) == 0 || !strings.Contains(strings.Join(problems, "\n"), "alert StashVerificationOverdue: metric stash_verification_max_age_seconds is not there") {
		t.Errorf("a dropped metric went unnoticed: %v", problems)
	}
	text := strings.ReplaceAll(string(exposition(t, "")), `invoker_name="undo"`, `other="undo"`)
	problems, err = Check([]byte(text), func(m string) bool { return strings.HasPrefix(m, "stash_restore_") })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(problems, "\n"), "alert StashRestoreSessionFailed: metric stash_restore_session_success has no label invoker_name") {
		t.Errorf("a missing label went unnoticed: %v", problems)
	}
	for _, p := range problems {
		if !strings.Contains(p, "stash_restore_") {
			t.Errorf("covers not honoured: %s", p)
		}
	}
}
