package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestStoreKeepsLatestPerInvoker(t *testing.T) {
	s := NewStore()
	if got := gather(t, s.Gatherer()); len(got["go_goroutines"]) != 1 {
		t.Fatalf("empty store lacks Go metrics: %v", got["go_goroutines"])
	}

	first := BackupResult{Common: testCommon(), Target: testTarget(), Hostname: "host-0"}
	s.SetBackup(first)
	second := first
	second.Success = true
	s.SetBackup(second) // same invoker: replaces first

	other := first
	other.InvokerName = "other-backup"
	s.SetBackup(other) // different invoker: kept beside it

	rc := testCommon()
	rc.InvokerKind, rc.InvokerName = "RestoreSession", "mydb-restore"
	s.SetRestore(RestoreResult{Common: rc, Target: testTarget(), Success: true})
	s.SetRepository(RepositoryResult{Common: testCommon(), SnapshotCount: 4})

	got := gather(t, s.Gatherer())
	succ := map[string]float64{}
	for _, ss := range got["stash_appscode_com_backupsession_success"] {
		succ[ss.labels["invoker_name"]] = ss.value
	}
	if len(succ) != 2 || succ["mydb-backup"] != 1 || succ["other-backup"] != 0 {
		t.Errorf("backupsession_success by invoker = %v, want mydb-backup=1 other-backup=0", succ)
	}
	if ss := got["stash_restore_session_success"]; len(ss) != 1 || ss[0].value != 1 {
		t.Errorf("stash_restore_session_success = %v", ss)
	}
	if ss := got["stash_repository_snapshot_count"]; len(ss) != 1 || ss[0].value != 4 {
		t.Errorf("stash_repository_snapshot_count = %v", ss)
	}
	if len(got["process_start_time_seconds"]) != 1 {
		t.Errorf("missing process metrics")
	}
}

func TestStoreHandler(t *testing.T) {
	s := NewStore()
	s.SetBackup(BackupResult{Common: testCommon(), Target: testTarget(), Hostname: "host-0", Success: true})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`stash_backup_session_success{driver="Restic",invoker_kind="BackupConfiguration",invoker_name="mydb-backup",namespace="demo",repository="s3-repo",team="dba"} 1`,
		`stash_appscode_com_backupsession_host_backup_success{`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Run with -race: writers and scrapes at once.
func TestStoreConcurrent(t *testing.T) {
	s := NewStore()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				r := BackupResult{Common: testCommon(), Success: (i+j)%2 == 0}
				s.SetBackup(r)
				s.SetRepository(RepositoryResult{Common: r.Common, SnapshotCount: int64(j)})
			}
		})
		wg.Go(func() {
			for range 20 {
				if _, err := s.Gatherer().Gather(); err != nil {
					t.Errorf("gather: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}
