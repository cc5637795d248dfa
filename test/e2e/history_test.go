package e2e

import (
	"context"
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// TestSystemVersionedHistory: a system-versioned table's history (rows
// updated and deleted, with their ROW_START and ROW_END) survives a backup
// and a restore, compared row by row with its timestamps, and the session
// says so in its HistoryBackedUp condition.
func TestSystemVersionedHistory(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "svsrc", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, `CREATE DATABASE sv;
CREATE TABLE sv.prices (id INT PRIMARY KEY, price DECIMAL(8,2)) WITH SYSTEM VERSIONING;
INSERT INTO sv.prices VALUES (1, 10.00), (2, 20.00), (3, 30.00);
UPDATE sv.prices SET price = 11.00 WHERE id = 1;
UPDATE sv.prices SET price = 12.00 WHERE id = 1;
UPDATE sv.prices SET price = 21.00 WHERE id = 2;
DELETE FROM sv.prices WHERE id = 3;`); err != nil {
		t.Fatal(err)
	}
	history := func(db *testenv.MariaDB) string {
		t.Helper()
		out, err := db.Exec(ctx, "SELECT id, price, ROW_START, ROW_END FROM sv.prices FOR SYSTEM_TIME ALL ORDER BY id, ROW_START")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := history(src)
	if n := strings.Count(want, "\n"); n != 6 {
		t.Fatalf("the source has %d versions, want 6 (2 current, 4 historical):\n%s", n, want)
	}

	ns := "history-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "sv", "--target", "appbinding/src", "--repository", "repo",
		"--param", "args=--databases sv"), "bc")
	startAgent(t, ns, "src")
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "sv", "--wait", "--timeout", "3m")
	mustOK(t, r, "backup")
	bs, err := st.BackupSessions(ns).Get(ctx, createdName(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	c := apimeta.FindStatusCondition(bs.Status.Conditions, stashv1beta1.ConditionHistoryBackedUp)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "sv.prices") {
		t.Errorf("HistoryBackedUp: %+v", c)
	}

	dst, err := s.env.AddMariaDB(ctx, "svdst", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addAppBinding(t, ns, "dst", dst)
	r = kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/dst")
	mustOK(t, r, "restore")
	startAgent(t, ns, "dst")
	if rs := waitRestore(t, st, ns, createdName(lastLine(r.stdout))); rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("restore: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if got := history(dst); got != want {
		t.Errorf("history after the restore:\n%s\nwant:\n%s", got, want)
	}

	// Transaction-precise history cannot be dumped: the backup keeps the
	// current rows, succeeds, and says which tables lost their history.
	if _, err := src.Exec(ctx, `CREATE DATABASE sv2;
CREATE TABLE sv2.ledger (id INT PRIMARY KEY, amount INT,
  trx_start BIGINT UNSIGNED GENERATED ALWAYS AS ROW START INVISIBLE,
  trx_end BIGINT UNSIGNED GENERATED ALWAYS AS ROW END INVISIBLE,
  PERIOD FOR SYSTEM_TIME(trx_start, trx_end)) ENGINE=InnoDB WITH SYSTEM VERSIONING;
INSERT INTO sv2.ledger (id, amount) VALUES (1, 5);
UPDATE sv2.ledger SET amount = 6 WHERE id = 1;`); err != nil {
		t.Fatal(err)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "precise", "--target", "appbinding/src", "--repository", "repo",
		"--param", "args=--databases sv2"), "bc precise")
	r = kubectl(t, "", "stash", "-n", ns, "trigger", "precise", "--wait", "--timeout", "3m")
	mustOK(t, r, "backup with transaction-precise history")
	bs, err = st.BackupSessions(ns).Get(ctx, createdName(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	c = apimeta.FindStatusCondition(bs.Status.Conditions, stashv1beta1.ConditionHistoryBackedUp)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "TransactionPreciseHistory" || !strings.Contains(c.Message, "sv2.ledger") {
		t.Errorf("HistoryBackedUp for transaction-precise history: %+v", c)
	}
}
