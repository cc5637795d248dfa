package e2e

import (
	"context"
	"strings"
	"testing"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// featuresSQL has the MariaDB features real schemas use that a logical
// backup must keep: each table's definition and rows are compared.
const featuresSQL = `
CREATE DATABASE fid_c;
USE fid_c;
CREATE TABLE parts (id INT, at DATE, PRIMARY KEY (id, at)) PARTITION BY RANGE (YEAR(at)) (PARTITION p2023 VALUES LESS THAN (2024), PARTITION p2024 VALUES LESS THAN (2025), PARTITION pmax VALUES LESS THAN MAXVALUE);
INSERT INTO parts VALUES (1, '2023-05-01'), (2, '2024-06-01'), (3, '2030-01-01');
CREATE TABLE hidden (id INT PRIMARY KEY, secret_note VARCHAR(20) INVISIBLE DEFAULT 'n/a', v INT);
INSERT INTO hidden (id, secret_note, v) VALUES (1, 'seen', 10), (2, DEFAULT, 20);
CREATE TABLE checked (id INT PRIMARY KEY, qty INT CHECK (qty >= 0), CONSTRAINT qty_small CHECK (qty < 1000));
INSERT INTO checked VALUES (1, 5);
CREATE TABLE defaults (id INT PRIMARY KEY, created DATETIME DEFAULT (NOW()), code VARCHAR(10) DEFAULT (CONCAT('c-', 1 + 1)), n INT DEFAULT (2 * 21));
INSERT INTO defaults (id, created) VALUES (1, '2024-01-01 00:00:00');
INSERT INTO defaults (id, created, code, n) VALUES (2, '2024-01-02 00:00:00', 'x', 1);
CREATE TABLE places (id INT PRIMARY KEY, pos POINT NOT NULL, body TEXT, SPATIAL INDEX (pos), FULLTEXT INDEX (body)) ENGINE=InnoDB;
INSERT INTO places VALUES (1, ST_GeomFromText('POINT(1 2)'), 'the quick brown fox'), (2, ST_GeomFromText('POINT(-3.5 4.25)'), 'lazy dog');
CREATE TABLE squeezed (id INT PRIMARY KEY, doc BLOB COMPRESSED, note VARCHAR(200) COMPRESSED);
INSERT INTO squeezed VALUES (1, REPEAT('abc', 1000), REPEAT('z', 150));
CREATE TABLE aria_t (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=Aria;
INSERT INTO aria_t VALUES (1, 'a'), (2, 'b');
CREATE TABLE bookings (id INT, room INT, d1 DATE, d2 DATE, PERIOD FOR stay(d1, d2), PRIMARY KEY (id, stay WITHOUT OVERLAPS));
INSERT INTO bookings VALUES (1, 101, '2024-01-01', '2024-01-05'), (1, 101, '2024-01-05', '2024-01-09');
`

// TestFeatureFidelity: partitions, invisible columns, CHECK constraints,
// default expressions, spatial and fulltext indexes, compressed columns,
// Aria tables and application-time periods survive a backup and a restore:
// every table's SHOW CREATE TABLE and its rows (invisible columns included)
// are the same.
func TestFeatureFidelity(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "featsrc", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, featuresSQL); err != nil {
		t.Fatal(err)
	}
	tables := []string{"parts", "hidden", "checked", "defaults", "places", "squeezed", "aria_t", "bookings"}
	snapshot := func(db *testenv.MariaDB) string {
		t.Helper()
		var b strings.Builder
		for _, tbl := range tables {
			def, err := db.Exec(ctx, "SHOW CREATE TABLE fid_c."+tbl)
			if err != nil {
				t.Fatal(err)
			}
			cols, err := db.Exec(ctx, "SELECT GROUP_CONCAT(column_name ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'fid_c' AND table_name = '"+tbl+"'")
			if err != nil {
				t.Fatal(err)
			}
			// Every column by name (invisible ones are not in SELECT *),
			// geometry as text.
			list := strings.ReplaceAll(strings.TrimSpace(cols), ",", "`, `")
			if tbl == "places" {
				list = "id`, ST_AsText(pos) AS `pos`, `body"
			}
			rows, err := db.Exec(ctx, "SELECT `"+list+"` FROM fid_c."+tbl+" ORDER BY 1")
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(def + rows)
		}
		ft, err := db.Exec(ctx, "SELECT id FROM fid_c.places WHERE MATCH(body) AGAINST ('fox')")
		if err != nil {
			t.Fatal(err)
		}
		return b.String() + "fulltext:" + ft
	}
	want := snapshot(src)

	ns := "features-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "feat", "--target", "appbinding/src", "--repository", "repo",
		"--param", "args=--databases fid_c"), "bc")
	startAgent(t, ns, "src")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "feat", "--wait", "--timeout", "3m"), "backup")

	dst, err := s.env.AddMariaDB(ctx, "featdst", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addAppBinding(t, ns, "dst", dst)
	r := kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/dst")
	mustOK(t, r, "restore")
	startAgent(t, ns, "dst")
	if rs := waitRestore(t, st, ns, createdName(lastLine(r.stdout))); rs.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("restore: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	if got := snapshot(dst); got != want {
		t.Errorf("restored tables differ:\n%s", diffLines(want, got))
	}
}
