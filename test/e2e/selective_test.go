package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// selectiveSQL has two schemas with a foreign key across them, a view, a
// routine and a trigger that name their schema, and tables a pattern
// leaves out.
const selectiveSQL = `CREATE DATABASE crm; CREATE DATABASE shop;
CREATE TABLE crm.customers (id INT PRIMARY KEY, name VARCHAR(40));
CREATE TABLE crm.leads (id INT PRIMARY KEY);
CREATE TABLE shop.orders (id INT PRIMARY KEY, customer INT, total DECIMAL(10,2), KEY (customer),
  CONSTRAINT fk_customer FOREIGN KEY (customer) REFERENCES crm.customers (id));
CREATE TABLE shop.audit_2024 (id INT PRIMARY KEY, what TEXT);
CREATE TABLE shop.audit_log (id INT AUTO_INCREMENT PRIMARY KEY, what TEXT);
INSERT INTO crm.customers VALUES (1, 'Ada'), (2, 'Grace'); INSERT INTO crm.leads VALUES (7);
INSERT INTO shop.orders VALUES (10, 1, 9.99), (11, 2, 19.50), (12, 1, 3.00);
INSERT INTO shop.audit_2024 VALUES (1, 'old');
CREATE VIEW shop.big_orders AS SELECT o.id, o.total FROM shop.orders o WHERE o.total > 5;
DELIMITER //
CREATE PROCEDURE shop.count_orders(OUT n INT) BEGIN SELECT COUNT(*) INTO n FROM shop.orders; END//
CREATE TRIGGER shop.audit_orders AFTER INSERT ON shop.orders FOR EACH ROW BEGIN INSERT INTO shop.audit_log (what) VALUES (CONCAT('order ', NEW.id)); END//
DELIMITER ;
`

// TestSelectiveRestore: from one full backup, a restore of some tables
// into an empty server brings exactly those; a renamed restore beside the
// original on the same server leaves the original untouched and its view,
// routine and trigger follow the new name; a filter that selects nothing
// is refused before anything changes and says what the snapshot holds; a
// full restore into another server says it replaced the accounts and
// which Secret no longer logs in.
func TestSelectiveRestore(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "selsrc", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, selectiveSQL); err != nil {
		t.Fatal(err)
	}
	tgt, err := s.env.AddMariaDB(ctx, "seltgt", testenv.MariaDBOptions{ExtraArgs: binlogArgs})
	if err != nil {
		t.Fatal(err)
	}
	ns := "selective-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	addAppBinding(t, ns, "tgt", tgt)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "sel", "--target", "appbinding/src", "--repository", "repo"), "backupconfig")
	startAgent(t, ns, "src")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "sel", "--wait", "--timeout", "3m"), "backup")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "agent", "apply", "--target", "appbinding/tgt", "--repository", "repo"), "agent for tgt")
	startAgent(t, ns, "tgt")
	restore := func(target string, args ...string) *stashv1beta1.RestoreSession {
		t.Helper()
		r := kubectl(t, "", append([]string{"stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/" + target}, args...)...)
		mustOK(t, r, "restore "+strings.Join(args, " "))
		return waitRestore(t, st, ns, createdName(lastLine(r.stdout)))
	}
	tables := func(db *testenv.MariaDB) string {
		t.Helper()
		out, err := db.Exec(ctx, "SELECT GROUP_CONCAT(CONCAT(table_schema, '.', table_name) ORDER BY 1) FROM information_schema.tables WHERE table_schema NOT IN ('mysql', 'sys', 'information_schema', 'performance_schema')")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}

	// What the snapshot holds, from its manifest, without a restore.
	r := kubectl(t, "", "stash", "-n", ns, "snapshots", "repo", "--contents", "latest")
	mustOK(t, r, "snapshots --contents")
	for _, want := range []string{"shop       table      orders", "crm        table      customers", "view       big_orders", "routine    PROCEDURE count_orders", "trigger    audit_orders"} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("snapshots --contents lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "accounts") {
		t.Errorf("snapshots --contents does not say the snapshot holds accounts:\n%s", r.stderr)
	}
	// A full restore says, before it starts, that it brings the accounts.
	r = kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/tgt", "--dry-run=client")
	mustOK(t, r, "restore --dry-run")
	if !strings.Contains(r.stderr, "replace the target's") {
		t.Errorf("restore --dry-run does not warn of the accounts:\n%s", r.stderr)
	}

	// Nothing selected: refused, and the target unchanged.
	rs := restore("tgt", "--include", "nosuch.*")
	if rs.Status.Phase != stashv1beta1.RestoreFailed || !strings.Contains(rs.Status.Message, "selects nothing") || !strings.Contains(rs.Status.Message, "shop") ||
		!strings.Contains(rs.Status.Message, "was not changed") {
		t.Errorf("a filter that selects nothing: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if got := tables(tgt); got != "NULL" && got != "" {
		t.Errorf("the target changed after a refused restore: %s", got)
	}

	// Some tables into an empty server: exactly those, and with
	// --skip-binlog none of it in the target's binlog.
	binlogEnd := func() string {
		out, err := tgt.Exec(ctx, "SHOW MASTER STATUS")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(out)[:2], ":")
	}
	before := binlogEnd()
	rs = restore("tgt", "--include", "shop.*", "--include", "crm.customers", "--exclude", "shop.audit_*", "--skip-binlog")
	if after := binlogEnd(); after != before {
		t.Errorf("a restore with --skip-binlog wrote to the target's binlog: %s, then %s", before, after)
	}
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("selective restore: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if got, want := tables(tgt), "crm.customers,shop.big_orders,shop.orders"; got != want {
		t.Errorf("restored objects: %s, want %s", got, want)
	}
	if got, want := fingerprint(t, tgt, "shop"), fingerprint(t, src, "shop"); strings.Contains(got, "audit_2024") || !strings.Contains(got, "count_orders") {
		t.Errorf("shop as restored:\n%s\nsource:\n%s", got, want)
	}
	for _, tbl := range []string{"shop.orders", "crm.customers"} {
		a, _ := src.Exec(ctx, "CHECKSUM TABLE "+tbl+" EXTENDED")
		b, _ := tgt.Exec(ctx, "CHECKSUM TABLE "+tbl+" EXTENDED")
		if a != b || a == "" {
			t.Errorf("%s: checksum %q, source %q", tbl, b, a)
		}
	}
	if rc := rs.Status.Restored; rc == nil || rc.Objects != 3 || rc.Available < 6 || rc.Accounts || !strings.Contains(rc.Selection, "--exclude shop.audit_*") {
		t.Errorf("status.restored: %+v", rc)
	}

	// Renamed, beside the original on the same server.
	if _, err := src.Exec(ctx, "INSERT INTO shop.orders VALUES (13, 2, 42.00)"); err != nil {
		t.Fatal(err)
	}
	original := fingerprint(t, src, "shop", "crm")
	rs = restore("src", "--include", "shop.*", "--rename-database", "shop=shop_restored")
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("renamed restore: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if after := fingerprint(t, src, "shop", "crm"); after != original {
		t.Errorf("the original changed:\n%s", diffLines(original, after))
	}
	if n, err := src.Exec(ctx, "SELECT COUNT(*) FROM shop_restored.orders"); err != nil || strings.TrimSpace(n) != "3" {
		t.Errorf("shop_restored.orders: %q, %v (want the 3 rows of the backup)", n, err)
	}
	defs, err := src.Exec(ctx, "SELECT CONCAT(view_definition, routine_definition, action_statement) FROM information_schema.views, information_schema.routines, information_schema.triggers WHERE table_schema = 'shop_restored' AND routine_schema = 'shop_restored' AND trigger_schema = 'shop_restored'")
	if err != nil || !strings.Contains(defs, "shop_restored") || strings.Contains(defs, "`shop`.") || strings.Contains(defs, " shop.") {
		t.Errorf("the view, routine and trigger of the renamed database: %q, %v", defs, err)
	}
	if _, err := src.Exec(ctx, "INSERT INTO shop_restored.orders VALUES (20, 1, 1.00)"); err != nil {
		t.Fatal(err)
	}
	// The original's trigger logged order 13; the renamed one logs 20 in its own copy.
	orig, _ := src.Exec(ctx, "SELECT GROUP_CONCAT(what) FROM shop.audit_log")
	renamed, _ := src.Exec(ctx, "SELECT GROUP_CONCAT(what) FROM shop_restored.audit_log")
	if strings.TrimSpace(orig) != "order 13" || strings.TrimSpace(renamed) != "order 20" {
		t.Errorf("audit logs after an insert into each copy: original %q, renamed %q", orig, renamed)
	}

	// A RestoreSession written by hand with only the rename annotation
	// restores the renamed database alone, beside the original.
	original = fingerprint(t, src, "shop", "crm")
	mustOK(t, kubectl(t, `apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata:
  name: rename-only
  annotations:
    stash.appscode.com/restore-rename-database: shop=shop_yaml
spec:
  repository: {name: repo}
  target:
    ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: src}
    rules:
    - snapshots: [latest]
`, "-n", ns, "apply", "-f", "-"), "apply rename-only")
	rs = waitRestore(t, st, ns, "rename-only")
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded || rs.Status.Restored == nil || rs.Status.Restored.Accounts ||
		!slices.Equal(rs.Status.Restored.Databases, []string{"shop_yaml"}) {
		t.Errorf("a rename alone: %s: %s (%+v)", rs.Status.Phase, rs.Status.Message, rs.Status.Restored)
	}
	if after := fingerprint(t, src, "shop", "crm"); after != original {
		t.Errorf("a rename alone changed the original databases:\n%s", diffLines(original, after))
	}

	// A full restore into another server replaces its accounts, and says
	// which Secret no longer logs in.
	before = binlogEnd()
	rs = restore("tgt")
	// The target's accounts are now the source's.
	tgt.Password = src.Password
	if err := tgt.RewriteOptionFile(); err != nil {
		t.Fatal(err)
	}
	if after := binlogEnd(); after == before {
		t.Errorf("a restore without --skip-binlog left the target's binlog at %s", after)
	}
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded || rs.Status.Restored == nil || !rs.Status.Restored.Accounts {
		t.Fatalf("full restore: %s: %s (%+v)", rs.Status.Phase, rs.Status.Message, rs.Status.Restored)
	}
	c := apimeta.FindStatusCondition(rs.Status.Conditions, stashv1beta1.ConditionCredentialsValid)
	if c == nil || c.Status != "False" || !strings.Contains(c.Message, "Secret tgt-auth") {
		t.Errorf("condition %s after the source's accounts replaced the target's: %+v", stashv1beta1.ConditionCredentialsValid, c)
	}

	// A dump made with --add-drop-database drops each database first: a
	// renamed or partial restore from it drops neither the original nor
	// the rest of the database it restores a table of.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "seldrop", "--target", "appbinding/src", "--repository", "repo",
		"--param", "args=--all-databases --add-drop-database"), "backupconfig seldrop")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "seldrop", "--wait", "--timeout", "3m"), "backup with --add-drop-database")
	original = fingerprint(t, src, "shop", "crm")
	rs = restore("src", "--include", "shop.*", "--rename-database", "shop=shop_copy")
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("renamed restore of an --add-drop-database dump: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if after := fingerprint(t, src, "shop", "crm"); after != original {
		t.Errorf("the original changed in a renamed restore of an --add-drop-database dump:\n%s", diffLines(original, after))
	}
	rs = restore("src", "--include", "shop.orders")
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded || !strings.Contains(rs.Status.Message+strings.Join(ptrWarnings(rs), " "), "DROP DATABASE") {
		t.Errorf("partial restore of an --add-drop-database dump: %s: %s (warnings %q)", rs.Status.Phase, rs.Status.Message, ptrWarnings(rs))
	}
	if after := fingerprint(t, src, "shop", "crm"); after != original {
		t.Errorf("a restore of shop.orders alone changed the rest of shop:\n%s", diffLines(original, after))
	}
}

func ptrWarnings(rs *stashv1beta1.RestoreSession) []string {
	if rs.Status.Restored == nil {
		return nil
	}
	return rs.Status.Restored.Warnings
}
