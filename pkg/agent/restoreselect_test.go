package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/manifest"
)

func TestRestoreSelectionHonoursOrRefusesEveryRuleField(t *testing.T) {
	rs := func(ann map[string]string, rules ...stashv1beta1.Rule) *stashv1beta1.RestoreSession {
		return &stashv1beta1.RestoreSession{ObjectMeta: metav1.ObjectMeta{Name: "r", Annotations: ann},
			Spec: stashv1beta1.RestoreSessionSpec{Target: &stashv1beta1.RestoreTarget{Rules: rules}}}
	}
	sel, err := restoreSelection(rs(map[string]string{contract.AnnotationRestoreRenameDatabase: "shop=s2, crm=c2"},
		stashv1beta1.Rule{Snapshots: []string{"latest"}, TargetHosts: []string{"host-0"}, Include: []string{"shop.*", "crm.customers"}, Exclude: []string{"shop.audit_*"}}))
	if err != nil || !sel.Selects("shop", "orders") || sel.Selects("shop", "audit_1") || sel.Selects("crm", "leads") || sel.As("crm") != "c2" {
		t.Errorf("selection %+v, %v", sel, err)
	}
	for name, bad := range map[string]*stashv1beta1.RestoreSession{
		"two rules":       rs(nil, stashv1beta1.Rule{}, stashv1beta1.Rule{}),
		"two snapshots":   rs(nil, stashv1beta1.Rule{Snapshots: []string{"a", "b"}}),
		"other host":      rs(nil, stashv1beta1.Rule{TargetHosts: []string{"host-1"}}),
		"bad pattern":     rs(nil, stashv1beta1.Rule{Include: []string{"a.b.c"}}),
		"bad rename":      rs(map[string]string{contract.AnnotationRestoreRenameDatabase: "shop"}),
		"rename to mysql": rs(map[string]string{contract.AnnotationRestoreRenameDatabase: "shop=mysql"}),
	} {
		if _, err := restoreSelection(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	for args, want := range map[string]string{"--one-database shop": "--one-database", "-o shop": "-o", "--force": "", "--database shop": ""} {
		if got := oneDatabaseArg(strings.Fields(args)); got != want {
			t.Errorf("args %q: one-database option %q, want %q", args, got, want)
		}
	}
	if err := checkRulePaths(rs(nil, stashv1beta1.Rule{Paths: []string{"/etc"}}), "/db.sql"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a path not in the snapshot: %v", err)
	}
	if err := checkRulePaths(rs(nil, stashv1beta1.Rule{Paths: []string{"/", "db.sql"}}), "/db.sql"); err != nil {
		t.Errorf("the snapshot's own file: %v", err)
	}
}

func TestCheckSelectionAgainstTheManifest(t *testing.T) {
	m := &manifest.Manifest{Databases: []string{"crm", "shop"}, Tables: []manifest.Table{{Database: "shop", Name: "orders"}, {Database: "crm", Name: "customers"}}, Views: []string{"shop.v"}}
	sel, _ := restoreSelection(&stashv1beta1.RestoreSession{Spec: stashv1beta1.RestoreSessionSpec{Rules: []stashv1beta1.Rule{{Include: []string{"shop.v", "crm"}}}}})
	if err := checkSelection(sel, m, "0123456789abcdef"); err != nil {
		t.Errorf("a view and a whole database: %v", err)
	}
	sel, _ = restoreSelection(&stashv1beta1.RestoreSession{Spec: stashv1beta1.RestoreSessionSpec{Rules: []stashv1beta1.Rule{{Include: []string{"shop.*", "crm.leads"}}}}})
	err := checkSelection(sel, m, "0123456789abcdef")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "crm.leads") || !strings.Contains(err.Error(), "databases crm, shop") || !strings.Contains(err.Error(), "not changed") {
		t.Errorf("an include that matches nothing: %v", err)
	}
	// An exclude of a database the snapshot does not hold is a typo; one of
	// a table it does not hold, in a database it does, is not refused.
	sel, _ = restoreSelection(&stashv1beta1.RestoreSession{Spec: stashv1beta1.RestoreSessionSpec{Rules: []stashv1beta1.Rule{{Exclude: []string{"msyql.*"}}}}})
	if err := checkSelection(sel, m, "0123456789abcdef"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--exclude msyql.*") {
		t.Errorf("an exclude of a database not in the snapshot: %v", err)
	}
	sel, _ = restoreSelection(&stashv1beta1.RestoreSession{Spec: stashv1beta1.RestoreSessionSpec{Rules: []stashv1beta1.Rule{{Exclude: []string{"shop.audit_*", "c*.x"}}}}})
	if err := checkSelection(sel, m, "0123456789abcdef"); err != nil {
		t.Errorf("excludes within databases the snapshot holds: %v", err)
	}
}

func TestSkipBinlogAnnotation(t *testing.T) {
	for v, want := range map[string]int{"": 0, "false": 0, "true": 1} {
		args, err := skipBinlogArgs(&stashv1beta1.RestoreSession{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{contract.AnnotationRestoreSkipBinlog: v}}})
		if err != nil || len(args) != want || (want == 1 && args[0] != "--init-command=SET SESSION sql_log_bin=0") {
			t.Errorf("%q: %v, %v", v, args, err)
		}
	}
	if _, err := skipBinlogArgs(&stashv1beta1.RestoreSession{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{contract.AnnotationRestoreSkipBinlog: "yes"}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("yes: %v", err)
	}
}

// A RestoreSession's driver must be Restic; the Pod settings a restore in
// the agent's Pod cannot apply are named.
func TestCheckRestoreSpec(t *testing.T) {
	rs := &stashv1beta1.RestoreSession{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: stashv1beta1.RestoreSessionSpec{Driver: stashv1beta1.DriverVolumeSnapshotter}}
	if _, err := checkRestoreSpec(rs); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "VolumeSnapshotter") {
		t.Errorf("driver VolumeSnapshotter: %v, want ErrInvalid", err)
	}
	rs.Spec.Driver = stashv1beta1.DriverRestic
	rs.Annotations = map[string]string{"stash.appscode.com/restore-rename-databases": "shop=s2"}
	if _, err := checkRestoreSpec(rs); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "restore-rename-databases") {
		t.Errorf("a mistyped restore annotation: %v, want ErrInvalid", err)
	}
	rs.Annotations = map[string]string{contract.AnnotationRestoreRenameDatabase: "shop=s2", contract.AnnotationRestoreSkipBinlog: "true", "kubectl.kubernetes.io/last-applied-configuration": "{}"}
	if un, err := checkRestoreSpec(rs); err != nil || len(un) != 0 {
		t.Errorf("a plain restore: %v, %v", un, err)
	}
	rs.Spec.RuntimeSettings.Container = &stashv1beta1.ContainerRuntimeSettings{}
	rs.Spec.Target = &stashv1beta1.RestoreTarget{Replicas: new(int32)}
	un, err := checkRestoreSpec(rs)
	if err != nil || !slices.Equal(un, []string{"spec.runtimeSettings", "spec.target.replicas"}) {
		t.Errorf("unapplied %v, %v", un, err)
	}
}

// Rules and snapshots are given in one place.
func TestCheckRuleSources(t *testing.T) {
	rs := &stashv1beta1.RestoreSession{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: stashv1beta1.RestoreSessionSpec{
		Rules:  []stashv1beta1.Rule{{Include: []string{"shop.*"}}},
		Target: &stashv1beta1.RestoreTarget{Rules: []stashv1beta1.Rule{{Snapshots: []string{"abc123"}}}}}}
	if err := checkRuleSources(rs, StepOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("rules in both places: %v", err)
	}
	rs.Spec.Rules = nil
	if err := checkRuleSources(rs, StepOptions{Snapshot: "def456"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("two different snapshots: %v", err)
	}
	for _, same := range []string{"", "abc123"} {
		if err := checkRuleSources(rs, StepOptions{Snapshot: same}); err != nil {
			t.Errorf("params snapshot %q: %v", same, err)
		}
	}
}
