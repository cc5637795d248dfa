package metrics

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// startPushgateway runs bin/pushgateway on a free 127.0.0.1 port until the
// test ends and returns its base URL.
func startPushgateway(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs("../../bin/pushgateway")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: run make tools (%v)", bin, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	logPath := filepath.Join(t.TempDir(), "pushgateway.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Kill the server even if the test binary dies without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start pushgateway: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})

	base := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("pushgateway exited early:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("pushgateway not ready after 10s (last error %v):\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape reads the Pushgateway's /metrics, keeping only the stash metrics.
func scrape(t *testing.T, base string) map[string][]series {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string][]series{}
	for name, mf := range mfs {
		if strings.HasPrefix(name, "stash_") {
			maps.Copy(out, families([]*dto.MetricFamily{mf}))
		}
	}
	return out
}

func TestPushToPushgateway(t *testing.T) {
	base := startPushgateway(t)
	r := BackupResult{
		Common: testCommon(), Target: testTarget(), Hostname: "host-0",
		SessionDuration: 3 * time.Second, // failed: only the duration is known
	}
	p := &Pusher{URL: base, Job: JobName(r.Common), Grouping: Grouping(r.Hostname)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The Pushgateway adds the job and grouping labels to every series.
	session := merge(commonLabels(), "job", "demo-backupconfiguration-mydb-backup", "instance", "host-0")
	target := merge(session, "kind", "AppBinding", "group", "appcatalog.appscode.com", "name", "mydb")
	host := merge(target, "hostname", "host-0")

	if err := p.Push(ctx, BackupRegistry(r)); err != nil {
		t.Fatalf("push failure: %v", err)
	}
	got := scrape(t, base)
	check(t, got, []want{
		{"backup_session_success", "backupsession_success", session, 0},
		{"backup_session_duration_seconds", "backupsession_duration_seconds", session, 3},
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

	r.Success, r.HostDuration, r.DataSizeBytes, r.FilesTotal = true, 2*time.Second, 2048, 7
	r.LastSuccess = time.Unix(1700000100, 0)
	if err := p.Push(ctx, BackupRegistry(r)); err != nil {
		t.Fatalf("push success: %v", err)
	}
	// Add semantics: repository metrics join the group without removing
	// the backup ones.
	repo := RepositoryResult{Common: r.Common, Backend: "s3", Bucket: "b", SnapshotCount: 1}
	if err := p.Push(ctx, RepositoryRegistry(repo)); err != nil {
		t.Fatalf("push repository: %v", err)
	}
	got = scrape(t, base)
	for name, wantV := range map[string]float64{
		"stash_backup_session_success":                                      1,
		"stash_appscode_com_backupsession_success":                          1,
		"stash_backup_host_backup_success":                                  1,
		"stash_appscode_com_backupsession_host_data_size_bytes":             2048,
		"stash_backup_host_files_total":                                     7,
		"stash_backup_last_success_time_seconds":                            1700000100,
		"stash_appscode_com_backupsession_target_last_success_time_seconds": 1700000100,
		"stash_repository_snapshot_count":                                   1,
		"stash_appscode_com_repository_snapshot_count":                      1,
	} {
		ss := got[name]
		if len(ss) != 1 || ss[0].value != wantV {
			t.Errorf("%s = %v, want one series = %v", name, ss, wantV)
		}
	}
	if l := got["stash_backup_session_success"][0].labels; !maps.Equal(l, session) {
		t.Errorf("labels after success push: %v", l)
	}
}

func TestPushErrorHidesCredentials(t *testing.T) {
	var gotUser, gotPass string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPass, _ = r.BasicAuth()
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer srv.Close()

	u := strings.Replace(srv.URL, "http://", "http://agent:s3cret@", 1)
	p := &Pusher{URL: u, Job: "j"}
	err := p.Push(context.Background(), BackupRegistry(BackupResult{Common: testCommon()}))
	if err == nil {
		t.Fatal("want error from a 500")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
	if !strings.Contains(err.Error(), strings.TrimPrefix(srv.URL, "http://")) {
		t.Errorf("error does not name the URL: %v", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("error not wrapped: %v", err)
	}
	if gotUser != "agent" || gotPass != "s3cret" {
		t.Errorf("basic auth = %q/%q, want agent/s3cret", gotUser, gotPass)
	}
}

func TestPushBoundedByContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // answers only once the test is over
	}))
	defer srv.Close()
	defer close(release)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := (&Pusher{URL: srv.URL, Job: "j"}).Push(ctx, BackupRegistry(BackupResult{}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("push took %v", d)
	}
}

func TestPushInvalidConfig(t *testing.T) {
	for _, p := range []Pusher{
		{URL: "", Job: "j"},
		{URL: "http://127.0.0.1:1", Job: ""},
		{URL: "http://u:p@[::1", Job: "j"},
	} {
		err := p.Push(context.Background(), BackupRegistry(BackupResult{}))
		if err == nil {
			t.Errorf("%+v: want error", p)
			continue
		}
		if strings.Contains(err.Error(), ":p@") {
			t.Errorf("error leaks credentials: %v", err)
		}
	}
}

// Delete removes one config's group from a real Pushgateway and leaves
// another's; ForgetInvoker does the same in the agent's own store.
func TestDeleteForgetsOneConfig(t *testing.T) {
	base := startPushgateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gone, kept := testCommon(), testCommon()
	kept.InvokerName = "kept"
	store := NewStore()
	for _, c := range []Common{gone, kept} {
		r := ConfigResult{Common: c, MaxAge: time.Hour, Created: time.Unix(1700000000, 0)}
		store.SetConfig(r)
		store.SetBackup(BackupResult{Common: c, Target: testTarget(), Hostname: "host-0", Success: true})
		if err := (&Pusher{URL: base, Job: JobName(c), Grouping: Grouping("host-0")}).Push(ctx, ConfigRegistry(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := (&Pusher{URL: base, Job: JobName(gone), Grouping: Grouping("host-0")}).Delete(); err != nil {
		t.Fatal(err)
	}
	names := func(ss []series) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.labels["invoker_name"])
		}
		return out
	}
	got := scrape(t, base)
	for _, m := range []string{"stash_backup_max_age_seconds", "stash_backupconfiguration_creation_time_seconds", "stash_backupconfiguration_invalid"} {
		if n := names(got[m]); !slices.Equal(n, []string{"kept"}) {
			t.Errorf("%s after the delete: configs %v, want [kept]", m, n)
		}
	}

	store.ForgetInvoker(gone.InvokerKind, gone.Namespace, gone.InvokerName)
	mfs, err := store.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := families(mfs)
	for _, m := range []string{"stash_backup_max_age_seconds", "stash_backup_session_success"} {
		if n := names(fams[m]); !slices.Equal(n, []string{"kept"}) {
			t.Errorf("%s in the store after ForgetInvoker: configs %v, want [kept]", m, n)
		}
	}
}
