package e2e

import (
	"context"
	"strings"
	"testing"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// TestLargeRowRoundTrip: a 40 MB row, which a server with
// max_allowed_packet=64M stores, backs up (mysqldump's own default packet
// limit, 24 MB, used to lose the connection mid-table) and restores into a
// server whose limit is just above the dump's hex statement; into one whose
// limit is below it, the restore fails naming the limit and the fix.
func TestLargeRowRoundTrip(t *testing.T) {
	ctx := context.Background()
	server := func(name, packet string) *testenv.MariaDB {
		db, err := s.env.AddMariaDB(ctx, name, testenv.MariaDBOptions{ExtraArgs: []string{"--max-allowed-packet=" + packet}})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	src := server("bigsrc", "64M")
	if _, err := src.Exec(ctx, "CREATE DATABASE bigrow; CREATE TABLE bigrow.t (id INT PRIMARY KEY, b LONGBLOB); "+
		"INSERT INTO bigrow.t VALUES (1, REPEAT(UNHEX('00ff7f27225c0a0d1a'), 40 * 1024 * 1024 DIV 9)), (2, 'small');"); err != nil {
		t.Fatal(err)
	}
	sum := func(db *testenv.MariaDB) string {
		t.Helper()
		out, err := db.Exec(ctx, "SELECT id, LENGTH(b), MD5(b) FROM bigrow.t ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := sum(src)
	if !strings.Contains(want, "41943033") {
		t.Fatalf("the source row is not 40 MB: %s", want)
	}

	ns := "bigrow-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "big", "--target", "appbinding/src", "--repository", "repo",
		"--param", "args=--databases bigrow"), "bc")
	startAgent(t, ns, "src")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "big", "--wait", "--timeout", "5m"), "backup of a 40 MB row")

	// 40 MB in hex is an 80 MB statement: 96M takes it.
	fits := server("bigdst", "96M")
	addAppBinding(t, ns, "dst", fits)
	r := kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/dst")
	mustOK(t, r, "restore into a server that takes the row")
	startAgent(t, ns, "dst")
	if rs := waitRestore(t, st, ns, createdName(lastLine(r.stdout))); rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("restore into max_allowed_packet=96M: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if got := sum(fits); got != want {
		t.Errorf("restored rows differ:\n%s\nwant:\n%s", got, want)
	}

	// 64M does not: the restore says why and how.
	small := server("bigsmall", "64M")
	addAppBinding(t, ns, "small", small)
	r = kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/small")
	mustOK(t, r, "restore into a server whose limit is below the statement")
	startAgent(t, ns, "small")
	rs := waitRestore(t, st, ns, createdName(lastLine(r.stdout)))
	if rs.Status.Phase != stashv1beta1.RestoreFailed {
		t.Fatalf("restore into max_allowed_packet=64M: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	for _, w := range []string{"max_allowed_packet", "hex", "SET GLOBAL max_allowed_packet"} {
		if !strings.Contains(rs.Status.Message, w) {
			t.Errorf("message %q does not say %q", rs.Status.Message, w)
		}
	}
}
