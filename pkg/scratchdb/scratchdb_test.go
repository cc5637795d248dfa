package scratchdb

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func needMariaDB(t *testing.T) tools {
	t.Helper()
	tl, err := findTools(os.Getenv("PATH"))
	if err != nil {
		t.Skipf("MariaDB is not installed (run make tools): %v", err)
	}
	return tl
}

// start starts a server in a fresh dir under t.TempDir, stopped at cleanup.
func start(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "verify-1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	s, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("Start took %s (pid %d, %s)", time.Since(began).Round(time.Millisecond), s.Pid(), s.Version())
	return s
}

// query runs SQL through the mariadb client with the server's option file.
func query(t *testing.T, s *Server, sql string) (string, error) {
	t.Helper()
	tl := needMariaDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tl.client, "--defaults-extra-file="+s.OptionFile, "--batch", "--skip-column-names")
	cmd.Stdin = strings.NewReader(sql)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return strings.TrimSpace(out.String()), nil
}

func mustQuery(t *testing.T, s *Server, sql string) string {
	t.Helper()
	out, err := query(t, s, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// waitGone polls until pid is gone (or a zombie), at most 15 s.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func assertGone(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there (%v)", dir, err)
	}
	if pids := pidsUsing(filepath.Join(dir, "data")); len(pids) > 0 {
		t.Errorf("processes %v still use %s", pids, dir)
	}
}

func TestServer(t *testing.T) {
	needMariaDB(t)
	s := start(t, Options{})
	pid := s.Pid()
	if !strings.Contains(s.Version(), "MariaDB") {
		t.Errorf("Version() = %q", s.Version())
	}

	got := mustQuery(t, s, "CREATE DATABASE x; CREATE TABLE x.t (a INT); INSERT INTO x.t VALUES (1),(2),(3); SELECT SUM(a) FROM x.t;")
	if got != "6" {
		t.Errorf("SUM = %q", got)
	}
	got = mustQuery(t, s, "SELECT @@skip_networking, @@event_scheduler, @@skip_grant_tables, @@character_set_server, @@datadir, @@tmpdir;")
	want := strings.Join([]string{"1", "OFF", "1", "utf8mb4", filepath.Join(s.Dir, "data") + "/", filepath.Join(s.Dir, "tmp")}, "\t")
	if got != want {
		t.Errorf("settings = %q, want %q", got, want)
	}
	if ports := tcpListeners(t, pid); len(ports) > 0 {
		t.Errorf("mariadbd listens on TCP %v", ports)
	}

	// What a dump without accounts holds: definers that do not exist
	// here, a view, a trigger, a routine.
	dump := "CREATE DATABASE y; USE y; CREATE TABLE t (a INT, b VARCHAR(10)) DEFAULT CHARSET=utf8mb4;" +
		"INSERT INTO t VALUES (1,'é'),(2,'😀');" +
		"CREATE DEFINER=`app`@`%` VIEW v AS SELECT a FROM t;" +
		"CREATE DEFINER=`app`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = NEW.a + 10;" +
		"CREATE DEFINER=`app`@`%` PROCEDURE p() SELECT COUNT(*) FROM t;" +
		"INSERT INTO t VALUES (3,'x'); CALL p(); SELECT SUM(a) FROM v;"
	if got := mustQuery(t, s, dump); got != "3\n16" {
		t.Errorf("dump load = %q", got)
	}
	// --skip-grant-tables also disables the event subsystem and account
	// statements: the reason for Options.GrantTables.
	for _, stmt := range []string{
		"CREATE EVENT y.e ON SCHEDULE EVERY 1 HOUR DO SELECT 1",
		"CREATE USER 'app'@'%'",
	} {
		if _, err := query(t, s, stmt); err == nil || !strings.Contains(err.Error(), "ERROR") {
			t.Errorf("%s under --skip-grant-tables: %v, want an error", stmt, err)
		}
	}

	// Nor do they keep a restored dump's accounts out: its FLUSH
	// PRIVILEGES loads the grant tables, and new sessions log in by them.
	if got := mustQuery(t, s, "SELECT CURRENT_USER()"); got != "@" {
		t.Errorf("CURRENT_USER() = %q before FLUSH PRIVILEGES", got)
	}
	mustQuery(t, s, "FLUSH PRIVILEGES")
	if got := mustQuery(t, s, "SELECT CURRENT_USER()"); got != "root@localhost" {
		t.Errorf("CURRENT_USER() = %q after FLUSH PRIVILEGES", got)
	}

	began := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop took %s", time.Since(began).Round(time.Millisecond))
	if alive(pid) {
		t.Errorf("pid %d alive after Stop", pid)
	}
	assertGone(t, s.Dir)
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	var nilServer *Server
	if err := nilServer.Stop(); err != nil {
		t.Errorf("nil Stop: %v", err)
	}
}

func TestGrantTables(t *testing.T) {
	needMariaDB(t)
	s := start(t, Options{GrantTables: true, BufferPool: "64M"})
	got := mustQuery(t, s, "CREATE DATABASE y; CREATE TABLE y.t (a INT);"+
		"CREATE EVENT y.e ON SCHEDULE EVERY 1 SECOND DO INSERT INTO y.t VALUES (1);"+
		"CREATE USER 'app'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON y.* TO 'app'@'%'; FLUSH PRIVILEGES;"+
		"SELECT CURRENT_USER(), @@skip_grant_tables, @@event_scheduler, @@innodb_buffer_pool_size,"+
		" (SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'event_scheduler'),"+
		" (SELECT COUNT(*) FROM information_schema.events);")
	if want := "root@localhost\t0\tOFF\t67108864\t0\t1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	// A dump made as the agent makes them loads, event included.
	dumpBin, err := look(searchDirs(os.Getenv("PATH")), "mariadb-dump", "mysqldump")
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dump, err := exec.CommandContext(ctx, dumpBin, "--defaults-extra-file="+s.OptionFile, "--single-transaction",
		"--routines", "--triggers", "--events", "--hex-blob", "--flush-privileges", "y").Output()
	if err != nil {
		t.Fatal(err)
	}
	got = mustQuery(t, s, "CREATE DATABASE y2; USE y2;\n"+string(dump)+"\nSELECT COUNT(*) FROM information_schema.events WHERE event_schema = 'y2';")
	if got != "1" {
		t.Errorf("events loaded into y2: %q", got)
	}
}

func TestNoServer(t *testing.T) {
	empty := t.TempDir()
	dir := filepath.Join(t.TempDir(), "verify-1")
	_, err := Start(context.Background(), Options{Dir: dir, Path: empty})
	if !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), "mariadb-server package") {
		t.Fatalf("err = %v, want ErrNoServer", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start without a server created %s", dir)
	}

	// The client and installer present, the server missing.
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mariadb-install-db", "mariadb"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Start(context.Background(), Options{Dir: dir, Path: bin})
	if !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), "mariadbd or mysqld not found") {
		t.Fatalf("err = %v, want ErrNoServer naming mariadbd", err)
	}
}

func TestSearchDirs(t *testing.T) {
	got := searchDirs("/usr/local/bin:/usr/bin::relative:/bin:/usr/bin/")
	want := []string{"/usr/local/bin", "/usr/bin", "/bin", "/usr/bin",
		"/usr/local/sbin", "/usr/local/libexec", "/usr/sbin", "/usr/libexec", "/sbin", "/libexec"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("searchDirs = %q, want %q", got, want)
	}
}

func TestStartFails(t *testing.T) {
	needMariaDB(t)
	dir := filepath.Join(t.TempDir(), "verify-1")
	t.Cleanup(func() { _ = Sweep(filepath.Dir(dir), "verify-") })
	began := time.Now()
	_, err := Start(context.Background(), Options{Dir: dir, BufferPool: "zzz"})
	t.Logf("failed Start took %s", time.Since(began).Round(time.Millisecond))
	if err == nil {
		t.Fatal("Start with buffer pool zzz succeeded")
	}
	if !strings.Contains(err.Error(), "error.log") || !strings.Contains(err.Error(), "Error while setting value 'zzz'") {
		t.Errorf("error does not quote error.log: %v", err)
	}
	assertGone(t, dir)
}

func TestStartTimeout(t *testing.T) {
	needMariaDB(t)
	dir := filepath.Join(t.TempDir(), "verify-1")
	t.Cleanup(func() { _ = Sweep(filepath.Dir(dir), "verify-") })
	for _, d := range []time.Duration{time.Millisecond, 300 * time.Millisecond} {
		_, err := Start(context.Background(), Options{Dir: dir, StartTimeout: d})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("StartTimeout %s: err = %v, want DeadlineExceeded", d, err)
		}
		assertGone(t, dir)
	}
}

func TestStartRefusesUsedDir(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep")
	if err := os.WriteFile(keep, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(context.Background(), Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("err = %v, want not empty", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("Start removed a directory it did not own: %v", err)
	}
	long := filepath.Join(dir, strings.Repeat("d", 120))
	if _, err := Start(context.Background(), Options{Dir: long}); err == nil || !strings.Contains(err.Error(), "socket path") {
		t.Errorf("err = %v, want socket path too long", err)
	}
}

func TestSweep(t *testing.T) {
	needMariaDB(t)
	parent := t.TempDir()
	s := start(t, Options{Dir: filepath.Join(parent, "verify-a")})
	pid := s.Pid()

	// A pid file naming a live process that is no server of that dir.
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	stale := filepath.Join(parent, "verify-b")
	other := filepath.Join(parent, "other")
	for _, d := range []string{stale, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(stale, "mariadbd.pid"), []byte(strconv.Itoa(sleep.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := Sweep(parent, ""); err == nil {
		t.Error("Sweep with no prefix did not refuse")
	}
	began := time.Now()
	if err := Sweep(parent, "verify-"); err != nil {
		t.Fatal(err)
	}
	t.Logf("Sweep took %s", time.Since(began).Round(time.Millisecond))
	waitGone(t, pid)
	assertGone(t, s.Dir)
	assertGone(t, stale)
	if _, err := os.Stat(other); err != nil {
		t.Errorf("Sweep removed a dir without the prefix: %v", err)
	}
	if !alive(sleep.Process.Pid) {
		t.Error("Sweep killed a process that was not the dir's server")
	}
	if err := Sweep(filepath.Join(parent, "missing"), "verify-"); err != nil {
		t.Errorf("Sweep of a missing parent: %v", err)
	}
}

// TestDiesWithAgent kills a process that started a server and checks the
// server dies too (Pdeathsig).
func TestDiesWithAgent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux only")
	}
	needMariaDB(t)
	parent := t.TempDir()
	t.Cleanup(func() { _ = Sweep(parent, "verify-") })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agent := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperAgent$", "-test.v")
	agent.Env = append(os.Environ(), "SCRATCHDB_HELPER_DIR="+filepath.Join(parent, "verify-1"))
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Held open until the kill: the helper ends at its EOF.
	stdin, err := agent.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "server pid "); ok {
			pid, _ = strconv.Atoi(v)
			break
		}
	}
	if pid == 0 {
		t.Fatal("helper did not start a server")
	}
	if !alive(pid) {
		t.Fatalf("server %d not running", pid)
	}
	_ = agent.Process.Kill()
	_ = agent.Wait()
	waitGone(t, pid)
}

// TestHelperAgent is TestDiesWithAgent's agent: it starts a server and
// waits to be killed.
func TestHelperAgent(t *testing.T) {
	dir := os.Getenv("SCRATCHDB_HELPER_DIR")
	if dir == "" {
		t.Skip("helper for TestDiesWithAgent")
	}
	s, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("server pid %d\n", s.Pid())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent goes away
	_ = s.Stop()
}

// tcpListeners lists the TCP ports pid listens on, from its socket inodes
// and /proc/net/tcp{,6}.
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	if len(inodes) == 0 {
		t.Fatalf("pid %d has no sockets (not even its unix socket)", pid)
	}
	var ports []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local rem st ... inode (field 9); st 0A is LISTEN.
			fs := strings.Fields(line)
			if len(fs) > 9 && fs[3] == "0A" && inodes[fs[9]] {
				ports = append(ports, fs[1])
			}
		}
	}
	return ports
}
