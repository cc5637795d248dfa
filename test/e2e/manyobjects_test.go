package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// TestTenThousandTables: 100 databases of 100 small tables each back up and
// restore completely: every table's checksum, every view and every trigger
// comes back. The times are logged here; docs/benchmarks.md has them beside
// mysqldump's and mariadb's on the same data (make bench).
func TestTenThousandTables(t *testing.T) {
	many := testenv.ManyDatabases{DBs: 100, Tables: 100}
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "manysrc", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := s.env.AddMariaDB(ctx, "manydst", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := src.Exec(ctx, many.CreateSQL(0)); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d tables in %s", many.DBs*many.Tables, time.Since(start).Round(time.Millisecond))
	checksums := func(db *testenv.MariaDB) string {
		t.Helper()
		out, err := db.Exec(ctx, many.ChecksumSQL())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := checksums(src)
	if n := strings.Count(want, "\n"); n != many.ChecksumLines() {
		t.Fatalf("the source answers %d lines, want %d:\n%.400s", n, many.ChecksumLines(), want)
	}

	ns := "many-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	addAppBinding(t, ns, "dst", dst)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "many", "--target", "appbinding/src", "--repository", "repo",
		"--param", "args=--databases "+strings.Join(many.Names(), " ")), "bc")
	startAgent(t, ns, "src")
	start = time.Now()
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "many", "--wait", "--timeout", "10m"), "backup of 10,000 tables")
	t.Logf("backup: %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	r := kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/dst")
	mustOK(t, r, "restore")
	startAgent(t, ns, "dst")
	var rs *stashv1beta1.RestoreSession
	name := createdName(lastLine(r.stdout))
	eventually(t, 10*time.Minute, "RestoreSession "+name+" to end", func() bool {
		rs, err = st.RestoreSessions(ns).Get(ctx, name)
		return err == nil && (rs.Status.Phase == stashv1beta1.RestoreSucceeded || rs.Status.Phase == stashv1beta1.RestoreFailed)
	})
	t.Logf("restore: %s", time.Since(start).Round(time.Millisecond))
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("restore of 10,000 tables: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if got := checksums(dst); got != want {
		t.Errorf("the restored tables differ from the source:\n%s", diffLines(got, want))
	}
}
