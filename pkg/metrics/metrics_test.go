package metrics

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// series is one gathered sample: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

// gather returns every family of g by name.
func gather(t *testing.T, g prometheus.Gatherer) map[string][]series {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return families(mfs)
}

func families(mfs []*dto.MetricFamily) map[string][]series {
	out := map[string][]series{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out[mf.GetName()] = append(out[mf.GetName()], series{l, m.GetGauge().GetValue()})
		}
	}
	return out
}

// want is one expected gauge under both names.
type want struct {
	legacy, current string
	labels          map[string]string
	value           float64
}

// check asserts each wanted gauge appears once under both prefixes, and
// that nothing else is there.
func check(t *testing.T, got map[string][]series, wants []want) {
	t.Helper()
	seen := map[string]bool{}
	for _, w := range wants {
		for _, name := range []string{"stash_" + w.legacy, "stash_appscode_com_" + w.current} {
			seen[name] = true
			ss := got[name]
			if len(ss) != 1 {
				t.Errorf("%s: %d series, want 1", name, len(ss))
				continue
			}
			if !maps.Equal(ss[0].labels, w.labels) {
				t.Errorf("%s labels:\n got %v\nwant %v", name, ss[0].labels, w.labels)
			}
			if ss[0].value != w.value {
				t.Errorf("%s = %v, want %v", name, ss[0].value, w.value)
			}
		}
	}
	for name := range got {
		if !seen[name] {
			t.Errorf("unexpected metric %s", name)
		}
	}
}

func merge(a map[string]string, kv ...string) map[string]string {
	out := maps.Clone(a)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func testCommon() Common {
	return Common{
		InvokerKind: "BackupConfiguration",
		InvokerName: "mydb-backup",
		Namespace:   "demo",
		Driver:      "Restic",
		Repository:  "s3-repo",
		// team is kept; the others are invalid or reserved and dropped.
		Extra: map[string]string{"team": "dba", "job": "x", "namespace": "evil", "bad-name": "y", "__x": "z"},
	}
}

func testTarget() Target {
	return Target{Kind: "AppBinding", Group: "appcatalog.appscode.com", Name: "mydb"}
}

func commonLabels() map[string]string {
	return map[string]string{
		"invoker_kind": "BackupConfiguration", "invoker_name": "mydb-backup",
		"namespace": "demo", "driver": "Restic", "repository": "s3-repo", "team": "dba",
	}
}

func TestBackupRegistry(t *testing.T) {
	last := time.Unix(1700000000, 500_000_000)
	r := BackupResult{
		Common: testCommon(), Target: testTarget(), Hostname: "host-0",
		Success: true, SessionDuration: 90 * time.Second, HostDuration: 80 * time.Second,
		DataSizeBytes: 1 << 20, DataUploadedBytes: 4096, ProcessingTime: 1500 * time.Millisecond,
		FilesTotal: 10, FilesNew: 3, FilesModified: 2, FilesUnmodified: 5,
		LastSuccess: last, HostCount: 3,
	}
	session := commonLabels()
	target := merge(session, "kind", "AppBinding", "group", "appcatalog.appscode.com", "name", "mydb")
	host := merge(target, "hostname", "host-0")

	check(t, gather(t, BackupRegistry(r)), []want{
		{"backup_session_success", "backupsession_success", session, 1},
		{"backup_session_duration_seconds", "backupsession_duration_seconds", session, 90},
		{"backup_target_count_total", "backupsession_target_count_total", session, 1},
		{"backup_last_success_time_seconds", "backupsession_last_success_time_seconds", session, 1700000000.5},
		{"backup_target_success", "backupsession_target_success", target, 1},
		{"backup_target_host_count_total", "backupsession_target_host_count_total", target, 3},
		{"backup_target_last_success_time_seconds", "backupsession_target_last_success_time_seconds", target, 1700000000.5},
		{"backup_host_backup_success", "backupsession_host_backup_success", host, 1},
		{"backup_host_backup_duration_seconds", "backupsession_host_backup_duration_seconds", host, 80},
		{"backup_host_data_size_bytes", "backupsession_host_data_size_bytes", host, 1 << 20},
		{"backup_host_data_uploaded_bytes", "backupsession_host_data_uploaded_bytes", host, 4096},
		{"backup_host_data_processing_time_seconds", "backupsession_host_data_processing_time_seconds", host, 1.5},
		{"backup_host_files_total", "backupsession_host_files_total", host, 10},
		{"backup_host_files_new", "backupsession_host_files_new", host, 3},
		{"backup_host_files_modified", "backupsession_host_files_modified", host, 2},
		{"backup_host_files_unmodified", "backupsession_host_files_unmodified", host, 5},
	})
}

// A failed backup still reports success=0 and zero stats, and no last
// success time when there never was one.
func TestBackupRegistryFailure(t *testing.T) {
	r := BackupResult{Common: testCommon(), Target: testTarget(), Hostname: "host-0", SessionDuration: 2 * time.Second}
	got := gather(t, BackupRegistry(r))
	session := commonLabels()
	target := merge(session, "kind", "AppBinding", "group", "appcatalog.appscode.com", "name", "mydb")
	host := merge(target, "hostname", "host-0")
	check(t, got, []want{
		{"backup_session_success", "backupsession_success", session, 0},
		{"backup_session_duration_seconds", "backupsession_duration_seconds", session, 2},
		{"backup_target_count_total", "backupsession_target_count_total", session, 1},
		{"backup_target_success", "backupsession_target_success", target, 0},
		{"backup_target_host_count_total", "backupsession_target_host_count_total", target, 1},
		{"backup_host_backup_success", "backupsession_host_backup_success", host, 0},
		{"backup_host_backup_duration_seconds", "backupsession_host_backup_duration_seconds", host, 0},
		{"backup_host_data_size_bytes", "backupsession_host_data_size_bytes", host, 0},
		{"backup_host_data_uploaded_bytes", "backupsession_host_data_uploaded_bytes", host, 0},
		{"backup_host_data_processing_time_seconds", "backupsession_host_data_processing_time_seconds", host, 0},
		{"backup_host_files_total", "backupsession_host_files_total", host, 0},
		{"backup_host_files_new", "backupsession_host_files_new", host, 0},
		{"backup_host_files_modified", "backupsession_host_files_modified", host, 0},
		{"backup_host_files_unmodified", "backupsession_host_files_unmodified", host, 0},
	})
}

func TestRestoreRegistry(t *testing.T) {
	c := testCommon()
	c.InvokerKind, c.InvokerName = "RestoreSession", "mydb-restore"
	r := RestoreResult{
		Common: c, Target: testTarget(), Hostname: "host-1",
		SessionDuration: 30 * time.Second, HostDuration: 25 * time.Second, TargetCount: 2, HostCount: 2,
	}
	session := merge(commonLabels(), "invoker_kind", "RestoreSession", "invoker_name", "mydb-restore")
	target := merge(session, "kind", "AppBinding", "group", "appcatalog.appscode.com", "name", "mydb")
	host := merge(target, "hostname", "host-1")
	check(t, gather(t, RestoreRegistry(r)), []want{
		{"restore_session_success", "restoresession_success", session, 0},
		{"restore_session_duration_seconds", "restoresession_duration_seconds", session, 30},
		{"restore_target_count_total", "restoresession_target_count_total", session, 2},
		{"restore_target_success", "restoresession_target_success", target, 0},
		{"restore_target_host_count_total", "restoresession_target_host_count_total", target, 2},
		{"restore_host_restore_success", "restoresession_host_restore_success", host, 0},
		{"restore_host_restore_duration_seconds", "restoresession_host_restore_duration_seconds", host, 25},
	})

	r.Success = true
	got := gather(t, RestoreRegistry(r))
	if v := got["stash_appscode_com_restoresession_success"][0].value; v != 1 {
		t.Errorf("restoresession_success = %v after success, want 1", v)
	}
}

func TestRepositoryRegistry(t *testing.T) {
	r := RepositoryResult{
		Common: testCommon(), Name: "s3-repo", Namespace: "storage",
		Backend: "s3", Bucket: "backups", Prefix: "demo/mydb",
		Integrity: ptr(true), SizeBytes: 5 << 20, SnapshotCount: 7, SnapshotsCleaned: 2,
	}
	l := merge(commonLabels(), "namespace", "storage", "name", "s3-repo",
		"backend", "s3", "bucket", "backups", "prefix", "demo/mydb")
	check(t, gather(t, RepositoryRegistry(r)), []want{
		{"repository_integrity", "repository_integrity", l, 1},
		{"repository_size_bytes", "repository_size_bytes", l, 5 << 20},
		{"repository_snapshot_count", "repository_snapshot_count", l, 7},
		{"repository_snapshot_cleaned", "repository_snapshot_cleaned", l, 2},
	})

	// Name and Namespace fall back to the Common ones.
	r.Name, r.Namespace, r.Integrity = "", "", ptr(false)
	got := gather(t, RepositoryRegistry(r))
	s := got["stash_repository_integrity"][0]
	if s.labels["name"] != "s3-repo" || s.labels["repository"] != "s3-repo" || s.labels["namespace"] != "demo" || s.value != 0 {
		t.Errorf("fallback: got %v = %v", s.labels, s.value)
	}

	// Before any check or verification there is no verdict, and no gauge;
	// a verdict alone pushes the gauge alone.
	r.Integrity = nil
	if got := gather(t, RepositoryRegistry(r)); len(got["stash_repository_integrity"]) != 0 || len(got["stash_repository_size_bytes"]) != 1 {
		t.Errorf("no verdict: got %v, want the size and no integrity", got)
	}
	r.Integrity = ptr(true)
	if got := gather(t, IntegrityRegistry(r)); len(got) != 2 || len(got["stash_repository_integrity"]) != 1 || got["stash_repository_integrity"][0].value != 1 {
		t.Errorf("integrity alone: got %v", got)
	}
}

func ptr[T any](v T) *T { return &v }

// Bad label values must not make registration panic or gathering fail.
func TestInvalidUTF8Value(t *testing.T) {
	c := testCommon()
	c.InvokerName = "bad\xffname"
	got := gather(t, BackupRegistry(BackupResult{Common: c}))
	if v := got["stash_backup_session_success"][0].labels["invoker_name"]; v != "bad\uFFFDname" {
		t.Errorf("invoker_name = %q", v)
	}
}

func TestCheckExtraLabels(t *testing.T) {
	if err := CheckExtraLabels(map[string]string{"team": "a", "env_2": "b"}); err != nil {
		t.Errorf("valid labels: %v", err)
	}
	for _, k := range []string{"job", "instance", "hostname", "name", "2x", "a-b", "__meta", ""} {
		err := CheckExtraLabels(map[string]string{k: "v"})
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("label %q: err = %v, want error naming it", k, err)
		}
	}
}

func TestJobNameAndGrouping(t *testing.T) {
	if got := JobName(testCommon()); got != "demo-backupconfiguration-mydb-backup" {
		t.Errorf("JobName = %q", got)
	}
	if g := Grouping("host-0"); !maps.Equal(g, map[string]string{"instance": "host-0"}) {
		t.Errorf("Grouping = %v", g)
	}
	if g := Grouping(""); len(g) != 0 {
		t.Errorf("Grouping(\"\") = %v, want empty", g)
	}
}
