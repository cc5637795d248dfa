package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// fidelitySQL is a schema meant to break naive dump tools.
const fidelitySQL = `
SET NAMES utf8mb4;
CREATE DATABASE fid_a CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE fid_b CHARACTER SET latin1;
USE fid_a;
CREATE TABLE texts (id INT PRIMARY KEY, body TEXT, emoji VARCHAR(20)) DEFAULT CHARSET=utf8mb4;
INSERT INTO texts VALUES (1, 'naïve café 𝄞 𠜎 🐬🏳️‍🌈', '😀'), (2, 'quote '' backslash \\ tab \t nl \n cr \r nul \0 end', 'x'), (3, NULL, '');
CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB, small TINYBLOB);
INSERT INTO blobs SELECT 1, UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR '')), UNHEX('00FF00') FROM seq_0_to_255;
INSERT INTO blobs SELECT 2, REPEAT(UNHEX(GROUP_CONCAT(LPAD(HEX(255 - seq), 2, '0') ORDER BY seq SEPARATOR '')), 400), NULL FROM seq_0_to_255;
CREATE TABLE typed (
  id INT PRIMARY KEY AUTO_INCREMENT,
  doc JSON CHECK (JSON_VALID(doc)),
  price DECIMAL(65,30),
  qty INT,
  total DECIMAL(65,30) AS (price * qty) STORED,
  label VARCHAR(64) AS (CONCAT('item-', id)) VIRTUAL,
  at6 DATETIME(6),
  ts TIMESTAMP(6) NULL DEFAULT NULL,
  f DOUBLE, bits BIT(10), e ENUM('a','b','c'), st SET('x','y','z'), y YEAR
);
SET time_zone = '+05:30';
INSERT INTO typed (doc, price, qty, at6, ts, f, bits, e, st, y) VALUES
  ('{"a": [1, 2, {"b": null}], "u": "\\u00e9", "n": 1.5e300}', '12345678901234567890123456789012345.123456789012345678901234567891', 3, '2024-02-29 23:59:59.999999', '2024-03-31 02:30:00.123456', 0.1, b'1010101010', 'b', 'x,z', 2024),
  ('[]', '-0.000000000000000000000000000001', 0, '1000-01-01 00:00:00.000000', '1970-01-01 05:30:01.000001', -1e-300, b'0', 'a', '', 1901);
SET time_zone = SYSTEM;
CREATE TABLE nopk (a INT, b VARCHAR(10));
INSERT INTO nopk VALUES (1, 'dup'), (1, 'dup'), (NULL, NULL);
CREATE TABLE parent (id INT PRIMARY KEY) ENGINE=InnoDB;
CREATE TABLE child (id INT PRIMARY KEY, parent_id INT, CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE) ENGINE=InnoDB;
INSERT INTO parent VALUES (1), (2);
INSERT INTO child VALUES (10, 1), (20, 2);
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100));
CREATE VIEW v_totals AS SELECT id, total, label FROM typed WHERE qty > 0;
DELIMITER //
CREATE TRIGGER trg_child_ins AFTER INSERT ON child FOR EACH ROW BEGIN INSERT INTO audit (what) VALUES (CONCAT('child ', NEW.id)); END//
CREATE PROCEDURE add_parent(IN n INT) BEGIN INSERT INTO parent VALUES (n); END//
CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2//
CREATE EVENT ev_cleanup ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO DELETE FROM audit WHERE id < 0//
DELIMITER ;
INSERT INTO child VALUES (30, 2);
USE fid_b;
CREATE TABLE legacy (id INT PRIMARY KEY, name VARCHAR(50)) DEFAULT CHARSET=latin1;
INSERT INTO legacy VALUES (1, 'Müller'), (2, 'façade');
`

// fingerprint is CHECKSUM TABLE of every table plus every routine, trigger,
// view and event definition in the given databases.
func fingerprint(t *testing.T, db *testenv.MariaDB, dbs ...string) string {
	t.Helper()
	ctx := context.Background()
	in := "'" + strings.Join(dbs, "','") + "'"
	tables, err := db.Exec(ctx, "SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema IN ("+in+") ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range strings.Fields(tables) {
		parts := strings.SplitN(tbl, ".", 2)
		out, err := db.Exec(ctx, fmt.Sprintf("CHECKSUM TABLE `%s`.`%s` EXTENDED", parts[0], parts[1]))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
	}
	for _, q := range []string{
		"SELECT routine_schema, routine_name, routine_type, definer, sql_mode, routine_definition, dtd_identifier, is_deterministic FROM information_schema.routines WHERE routine_schema IN (" + in + ") ORDER BY 1, 2",
		"SELECT trigger_schema, trigger_name, event_manipulation, event_object_table, action_timing, action_statement, definer, sql_mode FROM information_schema.triggers WHERE trigger_schema IN (" + in + ") ORDER BY 1, 2",
		"SELECT table_schema, table_name, view_definition, definer, security_type, check_option FROM information_schema.views WHERE table_schema IN (" + in + ") ORDER BY 1, 2",
		"SELECT event_schema, event_name, definer, event_definition, interval_value, interval_field, starts, status, on_completion FROM information_schema.events WHERE event_schema IN (" + in + ") ORDER BY 1, 2",
		"SELECT constraint_schema, table_name, constraint_name, referenced_table_name, delete_rule, update_rule FROM information_schema.referential_constraints WHERE constraint_schema IN (" + in + ") ORDER BY 1, 2, 3",
		"SELECT schema_name, default_character_set_name, default_collation_name FROM information_schema.schemata WHERE schema_name IN (" + in + ") ORDER BY 1",
	} {
		out, err := db.Exec(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
	}
	return b.String()
}

func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("- %s\n+ %s", x, y))
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = out[:10]
	}
	return strings.Join(out, "\n")
}

// waitRestore waits for a RestoreSession to end and returns it.
func waitRestore(t *testing.T, st *client.Stash, ns, name string) *stashv1beta1.RestoreSession {
	t.Helper()
	var rs *stashv1beta1.RestoreSession
	eventually(t, 3*time.Minute, "RestoreSession "+name+" to end", func() bool {
		var err error
		rs, err = st.RestoreSessions(ns).Get(context.Background(), name)
		return err == nil && (rs.Status.Phase == stashv1beta1.RestoreSucceeded || rs.Status.Phase == stashv1beta1.RestoreFailed)
	})
	return rs
}

func createdName(out string) string {
	f := strings.Fields(out)
	if len(f) == 0 {
		return ""
	}
	_, name, _ := strings.Cut(f[0], "/")
	return name
}

// localRepoNamespace makes namespace ns with the local Repository "repo"
// (its Secret "repo-creds") in a directory of the test's, and returns a
// client for the Stash kinds.
func localRepoNamespace(t *testing.T, ns string) *client.Stash {
	t.Helper()
	newNamespace(t, ns)
	st, err := client.NewStash(s.env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": ns + "-password"})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", t.TempDir(), "--secret", "repo-creds"), "repo")
	return st
}

func addAppBinding(t *testing.T, ns, name string, db *testenv.MariaDB) {
	t.Helper()
	createSecret(t, ns, name+"-auth", map[string]string{"username": db.User, "password": db.Password})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", name, "--url", "mysql://"+db.Addr(), "--secret", name+"-auth", "--type", "mariadb", "--version", "10.11"), "appbinding "+name)
}

func TestRestoreFidelity(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "fidsrc", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, fidelitySQL); err != nil {
		t.Fatal(err)
	}
	ns, other := "restore-e2e", "restore-e2e-other"
	newNamespace(t, ns)
	mustOK(t, kubectl(t, "", "create", "namespace", other), "namespace")
	st, err := client.NewStash(s.env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	repoPass := "fidelity-repo-password"
	dir := t.TempDir()
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": repoPass})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", dir, "--secret", "repo-creds"), "repo")
	addAppBinding(t, ns, "src", src)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "fid", "--target", "appbinding/src", "--repository", "repo",
		"--param", "args=--databases fid_a fid_b", "--backup-history-limit", "5", "--pushgateway", s.env.Pushgateway.URL), "bc")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "sys", "--target", "appbinding/src", "--repository", "repo",
		"--param", "args=--all-databases", "--backup-history-limit", "5"), "bc sys")
	startAgent(t, ns, "src")

	// State 1, backed up; then a change and state 2, backed up.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "fid", "--wait", "--timeout", "3m"), "backup 1")
	state1 := fingerprint(t, src, "fid_a", "fid_b")
	time.Sleep(1100 * time.Millisecond)
	at := time.Now().UTC().Format(time.RFC3339)
	time.Sleep(1100 * time.Millisecond)
	if _, err := src.Exec(ctx, "INSERT INTO fid_a.child VALUES (40, 1); UPDATE fid_a.texts SET emoji = '🦀' WHERE id = 3;"); err != nil {
		t.Fatal(err)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "fid", "--wait", "--timeout", "3m"), "backup 2")
	state2 := fingerprint(t, src, "fid_a", "fid_b")
	if state1 == state2 {
		t.Fatal("the change between backups did not change the fingerprint")
	}

	t.Run("latest into a fresh server", func(t *testing.T) {
		dst, err := s.env.AddMariaDB(ctx, "fiddst", testenv.MariaDBOptions{})
		if err != nil {
			t.Fatal(err)
		}
		addAppBinding(t, ns, "dst", dst)
		r := kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/dst", "--snapshot", "latest", "--pushgateway", s.env.Pushgateway.URL)
		mustOK(t, r, "restore")
		if !strings.Contains(r.stdout, "deployment.apps/stash-agent-dst") {
			t.Errorf("restore did not deploy an agent for the target:\n%s", r.stdout)
		}
		startAgent(t, ns, "dst")
		rs := waitRestore(t, st, ns, createdName(lastLine(r.stdout)))
		if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
			t.Fatalf("restore %s: %s", rs.Status.Phase, rs.Status.Message)
		}
		if got := fingerprint(t, dst, "fid_a", "fid_b"); got != state2 {
			t.Fatalf("restored database differs from the source:\n%s", diffLines(state2, got))
		}
		if rs.Status.Progress == nil || rs.Status.Progress.BytesDone == 0 || len(rs.Status.Stats) != 1 {
			t.Errorf("restore status lacks progress or stats: %+v", rs.Status)
		}
		waitMetric(t, "stash_restore_session_success", map[string]string{"invoker_name": rs.Name}, "1")
		queriesHaveData(t, "stash_restore_")

		// --at picks the newest snapshot at or before the time; --wait reports it.
		r = kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/dst", "--at", at, "--wait", "--timeout", "3m")
		mustOK(t, r, "restore --at --wait")
		if got := fingerprint(t, dst, "fid_a", "fid_b"); got != state1 {
			t.Fatalf("--at %s did not restore the first snapshot:\n%s", at, diffLines(state1, got))
		}

		// Failures say what happened and what state the database is in.
		r = kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/dst", "--snapshot", "deadbeef", "--wait", "--timeout", "2m")
		if r.code != 3 || !strings.Contains(r.stderr, `snapshot "deadbeef" not found`) || !strings.Contains(r.stderr, "database was not changed") {
			t.Errorf("missing snapshot: exit %d:\n%s", r.code, r.stderr)
		}
		// A snapshot holding bad SQL: the line number, no data.
		garbage := "CREATE DATABASE IF NOT EXISTS garb;\nUSE garb;\nCREATE TABLE t (a INT);\nINSERT INTO t VALUES ('topsecretvalue' 'x' garbage);\n"
		cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "bin", "restic"), "-r", dir, "--no-cache", "backup", "--stdin", "--stdin-filename", "garbage.sql", "--host", "garbage-host", "--json")
		cmd.Env = append(cmd.Environ(), "RESTIC_PASSWORD="+repoPass)
		cmd.Stdin = strings.NewReader(garbage)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("back up garbage: %v", err)
		}
		id := ""
		if i := strings.Index(string(out), `"snapshot_id":"`); i >= 0 {
			id = string(out)[i+15 : i+15+8]
		}
		r = kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/dst", "--snapshot", id, "--wait", "--timeout", "2m")
		if r.code != 3 || !strings.Contains(r.stderr, "at line 4 of the dump") || !strings.Contains(r.stderr, "partially restored") {
			t.Errorf("SQL error: exit %d, want 3, the line number and the database's state:\n%s", r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "topsecretvalue") {
			t.Errorf("the SQL error message carries data from the dump:\n%s", r.stderr)
		}
	})

	t.Run("into another namespace, as its usagePolicy allows", func(t *testing.T) {
		dst, err := s.env.AddMariaDB(ctx, "fidother", testenv.MariaDBOptions{})
		if err != nil {
			t.Fatal(err)
		}
		addAppBinding(t, other, "db", dst)
		r := kubectl(t, "", "stash", "-n", other, "restore", "--repository", "repo", "--repository-namespace", ns, "--target", "appbinding/db")
		if r.code != 2 || !strings.Contains(r.stderr, "usagePolicy") {
			t.Fatalf("a restore the usagePolicy forbids: exit %d, want 2 and a usagePolicy message:\n%s", r.code, r.stderr)
		}
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", dir, "--secret", "repo-creds", "--allowed-namespaces", "All"), "allow all")
		r = kubectl(t, "", "stash", "-n", other, "restore", "--repository", "repo", "--repository-namespace", ns, "--target", "appbinding/db")
		mustOK(t, r, "cross-namespace restore")
		startAgent(t, other, "db")
		rs := waitRestore(t, st, other, createdName(lastLine(r.stdout)))
		if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
			t.Fatalf("cross-namespace restore %s: %s", rs.Status.Phase, rs.Status.Message)
		}
		if got := fingerprint(t, dst, "fid_a", "fid_b"); got != state2 {
			t.Fatalf("cross-namespace restore differs:\n%s", diffLines(state2, got))
		}
	})

	t.Run("snapshots and download run restic locally", func(t *testing.T) {
		r := kubectl(t, "", "stash", "-n", ns, "snapshots", "repo")
		mustOK(t, r, "snapshots")
		if !strings.HasPrefix(r.stdout, "ID") || !strings.Contains(r.stdout, "host-0") || !strings.Contains(r.stdout, "garbage-host") {
			t.Fatalf("snapshots table:\n%s", r.stdout)
		}
		r = kubectl(t, "", "stash", "-n", ns, "snapshots", "repo", "-o", "json")
		mustOK(t, r, "snapshots -o json")
		var rows []struct {
			ID   string `json:"id"`
			Host string `json:"host"`
			Size int64  `json:"size"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) < 3 {
			t.Fatalf("snapshots -o json: %v\n%s", err, r.stdout)
		}
		id := ""
		for _, row := range rows {
			if row.Host == "host-0" && row.Size > 0 {
				id = row.ID
			}
		}
		out := filepath.Join(t.TempDir(), "dump.sql")
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "download", "repo", "--snapshot", id, "--to-file", out), "download")
		b, err := os.ReadFile(out)
		if err != nil || !strings.Contains(string(b), "CREATE TABLE `texts`") {
			t.Fatalf("downloaded dump: %v, %d bytes", err, len(b))
		}
		r = kubectl(t, "", "stash", "-n", ns, "download", "repo", "--snapshot", "nope1234")
		if r.code != 2 || !strings.Contains(r.stderr, "kubectl stash snapshots repo") {
			t.Errorf("download of a missing snapshot: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("users and grants with the system schema", func(t *testing.T) {
		if _, err := src.Exec(ctx, "CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw'; GRANT SELECT, INSERT ON fid_a.* TO 'app'@'%'; GRANT EXECUTE ON PROCEDURE fid_a.add_parent TO 'app'@'%';"); err != nil {
			t.Fatal(err)
		}
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "trigger", "sys", "--wait", "--timeout", "3m"), "backup sys")
		grants, err := src.Exec(ctx, "SHOW GRANTS FOR 'app'@'%'")
		if err != nil {
			t.Fatal(err)
		}
		want := fingerprint(t, src, "fid_a", "fid_b")
		dst, err := s.env.AddMariaDB(ctx, "fidsys", testenv.MariaDBOptions{})
		if err != nil {
			t.Fatal(err)
		}
		addAppBinding(t, ns, "sysdst", dst)
		r := kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "repo", "--target", "appbinding/sysdst", "--snapshot", "latest")
		mustOK(t, r, "restore sys")
		startAgent(t, ns, "sysdst")
		rs := waitRestore(t, st, ns, createdName(lastLine(r.stdout)))
		if rs.Status.Phase != stashv1beta1.RestoreSucceeded {
			t.Fatalf("restore %s: %s", rs.Status.Phase, rs.Status.Message)
		}
		// The source's users came with the system schema: connect as the source.
		dst.Password = src.Password
		if err := dst.RewriteOptionFile(); err != nil {
			t.Fatal(err)
		}
		got, err := dst.Exec(ctx, "SHOW GRANTS FOR 'app'@'%'")
		if err != nil || got != grants {
			t.Fatalf("grants after restore: %q (%v), want %q", got, err, grants)
		}
		if fp := fingerprint(t, dst, "fid_a", "fid_b"); fp != want {
			t.Fatalf("restored database differs:\n%s", diffLines(want, fp))
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
