package manifest

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dumpArgs are the mysqldump options the backup uses.
var dumpArgs = []string{"--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
	"--default-character-set=utf8mb4", "--flush-privileges", "--max-allowed-packet=1G", "--all-databases"}

// restoreSchema has what a restore could get subtly wrong.
func restoreSchema() string {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	return bq.Replace(`SET NAMES utf8mb4;
CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE shop;
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100), note TEXT, doc JSON,
  name_len INT AS (CHAR_LENGTH(name)) STORED, id2 INT AS (id * 2) VIRTUAL);
INSERT INTO customers (id, name, note, doc) VALUES
  (1, 'Zoë 🍕 𝄞', 'a ) ( , ; \' \\ \n ~bq~ "dq" */ -- # ;;', '{"a": [1, "x)"], "e": "😀"}'),
  (2, NULL, '', NULL),
  (3, 'It''s', 'tab\there\r\n\0end\Z', '{}');
CREATE TABLE blobs (id INT PRIMARY KEY, b BLOB, lb LONGBLOB);
INSERT INTO blobs VALUES (1, X'` + hex.EncodeToString(all) + `', REPEAT(X'` + hex.EncodeToString(all) + `', 4000)), (2, '', NULL);
CREATE TABLE nopk (a INT, b VARCHAR(10));
INSERT INTO nopk VALUES (1, 'x'), (1, 'x'), (2, 'y');
CREATE TABLE empty_t (id INT PRIMARY KEY);
CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer INT, amount DECIMAL(10,2), at DATETIME(6),
  FOREIGN KEY (customer) REFERENCES customers (id));
INSERT INTO orders (customer, amount, at)
  SELECT 1 + seq % 3, seq * 1.25, '2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_3000;
CREATE VIEW v_orders AS SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer;
CREATE SEQUENCE seq1;
DELIMITER ;;
CREATE PROCEDURE p1(IN x INT) BEGIN SELECT x; CREATE TABLE IF NOT EXISTS not_a_table (a INT); END;;
CREATE FUNCTION f1(x INT) RETURNS INT DETERMINISTIC RETURN x + 1;;
CREATE TRIGGER trg BEFORE INSERT ON orders FOR EACH ROW BEGIN SET NEW.amount = NEW.amount + 0; END;;
CREATE EVENT ev ON SCHEDULE EVERY 1 DAY DO DELETE FROM nopk WHERE a < 0;;
DELIMITER ;
`)
}

// TestRestoreRoundTrip dumps a real server, loads the dump into a second
// one, dumps that, and expects the manifests to match; then one changed
// row must be named.
func TestRestoreRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two MariaDB servers")
	}
	for _, tool := range []string{"mariadb-install-db", "mariadb", "mariadb-dump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	server := "/usr/sbin/mariadbd"
	if p, err := exec.LookPath("mariadbd"); err == nil {
		server = p
	} else if _, err := os.Stat(server); err != nil {
		t.Skip("mariadbd not found")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()

	src := startServer(ctx, t, server, filepath.Join(dir, "a"))
	src.run(ctx, t, restoreSchema())
	dump1, want := src.dump(ctx, t)

	if want.Version != 1 || !want.Complete {
		t.Fatalf("manifest of the source: %+v", want)
	}
	for _, c := range []struct {
		name string
		rows int64
	}{{"customers", 3}, {"blobs", 2}, {"nopk", 3}, {"empty_t", 0}, {"orders", 3000}} {
		if tb := table(want, "shop", c.name); tb == nil || tb.Rows != c.rows {
			t.Errorf("table shop.%s: %+v, want %d rows", c.name, tb, c.rows)
		}
	}
	if tb := table(want, "shop", "empty_t"); tb != nil && tb.Digest != strings.Repeat("0", 32) {
		t.Errorf("empty table digest %s", tb.Digest)
	}
	if table(want, "shop", "v_orders") != nil || !slices.Contains(want.Views, "shop.v_orders") {
		t.Errorf("view shop.v_orders: tables %v, views %v", want.Tables, want.Views)
	}
	if table(want, "shop", "not_a_table") != nil {
		t.Error("a CREATE TABLE inside a procedure body was taken for a table")
	}
	for _, c := range []struct {
		got  []string
		want string
	}{
		{want.Routines, "shop.PROCEDURE p1"}, {want.Routines, "shop.FUNCTION f1"},
		{want.Triggers, "shop.trg"}, {want.Events, "shop.ev"}, {want.Sequences, "shop.seq1"},
		{want.Databases, "mysql"}, {want.Databases, "shop"},
	} {
		if !slices.Contains(c.got, c.want) {
			t.Errorf("%s not in %v", c.want, c.got)
		}
	}

	// The dump replaces the mysql tables; without FLUSH PRIVILEGES the
	// scratch server keeps the grants it started with, so the restore and
	// the dump after it log in as its own root. (--skip-grant-tables
	// cannot be used instead: it disables the event scheduler for good,
	// and then CREATE/DROP EVENT fail, error 1577.)
	// Only that exact line: mariadb-dump writes each row on a line of its
	// own, and rows of mysql.help_topic mention FLUSH PRIVILEGES too;
	// dropping every line that contains it lost four of them.
	var load []byte
	stripped := 0
	for _, line := range bytes.SplitAfter(dump1, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == "/*! FLUSH PRIVILEGES */;" {
			stripped++
			continue
		}
		load = append(load, line...)
	}
	if stripped != 1 {
		t.Fatalf("%d FLUSH PRIVILEGES lines in the dump, want 1", stripped)
	}
	dst := startServer(ctx, t, server, filepath.Join(dir, "b"))
	dst.runBytes(ctx, t, load)
	_, got := dst.dump(ctx, t)
	if d := Compare(want, got, DefaultIgnore); len(d) != 0 {
		t.Fatalf("restored server differs:\n%s", strings.Join(d, "\n"))
	}

	dst.run(ctx, t, "UPDATE shop.nopk SET b = 'z' WHERE a = 2;")
	_, changed := dst.dump(ctx, t)
	if d := Compare(want, changed, DefaultIgnore); !slices.Equal(d, []string{"table shop.nopk: data differs (digest)"}) {
		t.Errorf("after changing a row, Compare = %q", d)
	}
}

type testServer struct {
	dir, socket string
}

// startServer bootstraps and starts a mariadbd on a socket only, stopped
// by t.Cleanup even when the test fails.
func startServer(ctx context.Context, t *testing.T, server, dir string, extra ...string) *testServer {
	t.Helper()
	s := &testServer{dir: dir, socket: filepath.Join(dir, "s.sock")}
	data, tmp := filepath.Join(dir, "data"), filepath.Join(dir, "tmp")
	for _, d := range []string{data, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	inst := exec.CommandContext(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+data, "--user="+u.Username,
		"--auth-root-authentication-method=normal", "--skip-test-db")
	// Its own tmpdir: a starting mariadbd removes #sql* files in its tmpdir.
	inst.Env = append(os.Environ(), "TMPDIR="+tmp)
	if out, err := inst.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	logPath := filepath.Join(dir, "mariadbd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--socket=" + s.socket,
		"--skip-networking", "--pid-file=" + filepath.Join(dir, "mariadbd.pid"), "--user=" + u.Username,
		"--event-scheduler=OFF", "--innodb-buffer-pool-size=64M"}, extra...)
	cmd := exec.Command(server, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: the server dies with the test binary if cleanup never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ping := exec.CommandContext(ctx, "mariadb", "--no-defaults", "--socket="+s.socket, "-uroot",
			"--connect-timeout=2", "-e", "SELECT 1")
		if err := ping.Run(); err == nil {
			return s
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("mariadbd exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("mariadbd not ready after 30s:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *testServer) run(ctx context.Context, t *testing.T, sql string) {
	t.Helper()
	s.runBytes(ctx, t, []byte(sql))
}

func (s *testServer) runBytes(ctx context.Context, t *testing.T, sql []byte) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "mariadb", "--no-defaults", "--socket="+s.socket, "-uroot",
		"--max-allowed-packet=1G", "--default-character-set=utf8mb4")
	cmd.Stdin = bytes.NewReader(sql)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadb: %v\n%s", err, out)
	}
}

// dump runs mariadb-dump as the backup does, building the manifest from
// its stdout as it streams.
func (s *testServer) dump(ctx context.Context, t *testing.T) ([]byte, *Manifest) {
	t.Helper()
	var out, stderr bytes.Buffer
	b := NewBuilder()
	cmd := exec.CommandContext(ctx, "mariadb-dump", append([]string{"--no-defaults", "--socket=" + s.socket, "-uroot"}, dumpArgs...)...)
	cmd.Stdout = io.MultiWriter(&out, b)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mariadb-dump: %v\n%s", err, stderr.String())
	}
	m := b.Manifest()
	if whole := build(out.String(), 0, 0); !equalManifest(whole, m) {
		t.Fatalf("streamed and whole manifests differ: %s", fmt.Sprint(Compare(whole, m, nil)))
	}
	return out.Bytes(), m
}
