// Package scratchdb starts a throwaway MariaDB server to verify a backup
// with: the agent restores a snapshot into it, dumps it again and compares.
// The server listens on a unix socket only, keeps every file in one
// directory, and Stop removes that directory.
package scratchdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoServer marks a missing server binary.
var ErrNoServer = errors.New("scratchdb: no MariaDB server to verify with: the agent image needs the mariadb-server package (mariadbd, mariadb-install-db), or give the verification an AppBinding")

const (
	defaultBufferPool   = "128M"
	defaultStartTimeout = 2 * time.Minute
	// stopGrace bounds the wait after SIGTERM, and again after SIGKILL.
	stopGrace = 10 * time.Second
	// maxSocketPath is sun_path (108 bytes) less its NUL.
	maxSocketPath = 107
	logTailLines  = 20
)

// Options configure one server.
type Options struct {
	// Dir is a fresh directory under the agent's scratch volume: it must
	// not exist or be empty, since Stop removes it. Everything goes inside.
	Dir string
	// Path (a PATH value; empty: $PATH) is searched for mariadbd, and also
	// the sbin and libexec beside each of its dirs, since a non-root PATH
	// lacks /usr/sbin; then for mariadb-install-db and the mariadb client.
	Path string
	// BufferPool is innodb_buffer_pool_size; default 128M.
	BufferPool string
	// Env is added to the children's environment.
	Env []string
	// StartTimeout bounds Start (install and readiness); default 2m.
	StartTimeout time.Duration
	// GrantTables keeps the grant tables on (no --skip-grant-tables).
	// --skip-grant-tables also disables the event subsystem, so a dump with
	// events (CREATE EVENT) or CREATE USER/GRANT fails to load; and a dump's
	// FLUSH PRIVILEGES turns the grant tables back on anyway. With grant
	// tables root@localhost has no password over the socket.
	GrantTables bool
	// Args are extra mariadbd options (to match the source's settings).
	// They come before the options Start sets, which win over them.
	Args []string
}

// Server is a running scratch server.
type Server struct {
	// Dir is Options.Dir made absolute; Stop removes it.
	Dir    string
	Socket string
	// OptionFile is a client option file ([client] socket, user=root,
	// protocol=socket, utf8mb4): pass it with --defaults-extra-file so
	// mysql and mysqldump reach this server and never a TCP host.
	OptionFile string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed once the server has exited
	waitErr error
	version string
}

// tools are the binaries Start runs.
type tools struct{ server, installDB, client string }

func findTools(path string) (tools, error) {
	var t tools
	var err error
	dirs := searchDirs(path)
	if t.server, err = look(dirs, "mariadbd", "mysqld"); err != nil {
		return t, err
	}
	if t.installDB, err = look(dirs, "mariadb-install-db", "mysql_install_db"); err != nil {
		return t, err
	}
	if t.client, err = look(dirs, "mariadb", "mysql"); err != nil {
		return t, err
	}
	return t, nil
}

// searchDirs lists path's absolute dirs, then the sbin and libexec beside
// each (/usr/bin: /usr/sbin, /usr/libexec), where packages put the server.
func searchDirs(path string) []string {
	var bins []string
	for _, d := range filepath.SplitList(path) {
		if filepath.IsAbs(d) {
			bins = append(bins, filepath.Clean(d))
		}
	}
	dirs := append([]string(nil), bins...)
	seen := map[string]bool{}
	for _, d := range bins {
		seen[d] = true
	}
	for _, d := range bins {
		for _, s := range []string{"sbin", "libexec"} {
			if p := filepath.Join(filepath.Dir(d), s); !seen[p] {
				seen[p] = true
				dirs = append(dirs, p)
			}
		}
	}
	return dirs
}

// look finds the first of names (in order of preference) in dirs.
func look(dirs []string, names ...string) (string, error) {
	for _, name := range names {
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: %s not found in %s", ErrNoServer, strings.Join(names, " or "), strings.Join(dirs, ":"))
}

// Start installs a datadir in o.Dir and starts mariadbd on it, returning
// once it answers a query. On error nothing is left: no process, no o.Dir.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("scratchdb: Options.Dir is empty")
	}
	if o.Path == "" {
		o.Path = os.Getenv("PATH")
	}
	if o.BufferPool == "" {
		o.BufferPool = defaultBufferPool
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = defaultStartTimeout
	}
	t, err := findTools(o.Path)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("scratchdb: %w", err)
	}
	s := &Server{Dir: dir, Socket: filepath.Join(dir, "mysqld.sock"), OptionFile: filepath.Join(dir, "client.cnf")}
	if len(s.Socket) > maxSocketPath {
		return nil, fmt.Errorf("scratchdb: socket path %s is longer than %d bytes: use a shorter Dir", s.Socket, maxSocketPath)
	}
	// Refuse a directory in use before owning it: Stop removes it.
	if err := claimDir(dir); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	if err := s.start(ctx, o, t); err != nil {
		if serr := s.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, err
	}
	return s, nil
}

// claimDir creates dir, or accepts it empty.
func claimDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return nil
	}
	if !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("scratchdb: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("scratchdb: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("scratchdb: %s is not empty: Start needs a fresh directory, which Stop removes", dir)
	}
	return nil
}

func (s *Server) path(name string) string { return filepath.Join(s.Dir, name) }

func (s *Server) start(ctx context.Context, o Options, t tools) error {
	datadir, tmpdir := s.path("data"), s.path("tmp")
	// Its own tmpdir: a starting mariadbd deletes every #sql* file in it.
	if err := os.Mkdir(tmpdir, 0o700); err != nil {
		return fmt.Errorf("scratchdb: %w", err)
	}
	opt := "[client]\nsocket=" + s.Socket + "\nuser=root\nprotocol=socket\ndefault-character-set=utf8mb4\n"
	if err := os.WriteFile(s.OptionFile, []byte(opt), 0o600); err != nil {
		return fmt.Errorf("scratchdb: %w", err)
	}
	// MYSQLD_BOOTSTRAP makes the script use the mariadbd found here.
	env := append(append(os.Environ(), o.Env...), "TMPDIR="+tmpdir, "MYSQLD_BOOTSTRAP="+t.server)
	// mariadbd refuses to run as root without --user; a non-root user
	// cannot switch users (and may have no passwd entry), so omit it then.
	var asUser []string
	if os.Geteuid() == 0 {
		name := "root"
		if u, err := user.LookupId("0"); err == nil {
			name = u.Username
		}
		asUser = []string{"--user=" + name}
	}

	// The script passes unknown flags to the bootstrap mariadbd unquoted:
	// no paths among them (TMPDIR sets its tmpdir).
	install := append([]string{"--no-defaults", "--datadir=" + datadir,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
		"--innodb-log-file-size=64M", "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0"}, asUser...)
	if err := s.install(ctx, t.installDB, install, env); err != nil {
		return err
	}

	args := append(append([]string{"--no-defaults"}, o.Args...),
		"--datadir="+datadir,
		"--tmpdir="+tmpdir,
		"--socket="+s.Socket,
		"--pid-file="+s.path("mariadbd.pid"),
		"--log-error="+s.path("error.log"),
		"--skip-networking",          // unix socket only
		"--skip-name-resolve",        // no DNS
		"--event-scheduler=OFF",      // restored events never run
		"--secure-file-priv="+tmpdir, // file I/O from SQL stays inside Dir
		"--innodb-buffer-pool-size="+o.BufferPool,
		// Speed over durability: the data is thrown away.
		"--innodb-log-file-size=64M",
		"--innodb-flush-log-at-trx-commit=0",
		"--innodb-doublewrite=0",
		"--sync-binlog=0",
		"--skip-log-bin",
		"--max-allowed-packet=1G",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci",
	)
	args = append(args, asUser...)
	if !o.GrantTables {
		// A restored dump's accounts cannot lock the agent out (until a
		// FLUSH PRIVILEGES in the dump turns the grant tables on).
		args = append(args, "--skip-grant-tables")
	}
	if err := s.launch(t.server, args, env); err != nil {
		return err
	}
	return s.waitReady(ctx, t.client, env, o.StartTimeout)
}

// install runs mariadb-install-db, logging to install.log.
func (s *Server) install(ctx context.Context, bin string, args, env []string) error {
	logPath := s.path("install.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("scratchdb: %w", err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, s.Dir, logf, logf
	cmd.SysProcAttr = sysProcAttr()
	// The script's children (the bootstrap mariadbd) share its group.
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, true) }
	cmd.WaitDelay = stopGrace
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("scratchdb: %s: %w; install.log:\n%s", filepath.Base(bin), err, tail(logPath, logTailLines))
	}
	return nil
}

// launch starts mariadbd in its own process group, stdout and stderr into
// error.log (its early errors come before it opens --log-error).
func (s *Server) launch(bin string, args, env []string) error {
	logf, err := os.OpenFile(s.path("error.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("scratchdb: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, s.Dir, logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("scratchdb: start %s: %w", bin, err)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, make(chan struct{})
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(s.done)
	}()
	// Written now, not when mariadbd gets to it, so Sweep finds the pid
	// however early the agent dies; mariadbd rewrites the same pid.
	pid := []byte(strconv.Itoa(cmd.Process.Pid) + "\n")
	if err := os.WriteFile(s.path("mariadbd.pid"), pid, 0o600); err != nil {
		return fmt.Errorf("scratchdb: %w", err)
	}
	return nil
}

// waitReady polls SELECT VERSION() over the socket until it answers, the
// server exits, or ctx ends.
func (s *Server) waitReady(ctx context.Context, client string, env []string, timeout time.Duration) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		// Probe only once the socket exists: no client forks during
		// InnoDB's start.
		if _, err := os.Stat(s.Socket); err == nil {
			v, err := s.probe(ctx, client, env)
			if err == nil {
				s.mu.Lock()
				s.version = v
				s.mu.Unlock()
				return nil
			}
			last = err
		}
		select {
		case <-s.done:
			s.mu.Lock()
			werr := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("scratchdb: mariadbd exited before it was ready (%v); error.log:\n%s", werr, tail(s.path("error.log"), logTailLines))
		case <-ctx.Done():
			cause := ctx.Err()
			if errors.Is(cause, context.DeadlineExceeded) {
				cause = fmt.Errorf("not ready within %s: %w", timeout, cause)
			}
			if last != nil {
				cause = fmt.Errorf("%w (last probe: %v)", cause, last)
			}
			return fmt.Errorf("scratchdb: mariadbd %w; error.log:\n%s", cause, tail(s.path("error.log"), logTailLines))
		case <-tick.C:
		}
	}
}

func (s *Server) probe(ctx context.Context, client string, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, "--no-defaults", "--protocol=socket", "--socket="+s.Socket,
		"-uroot", "--connect-timeout=2", "--batch", "--skip-column-names", "-e", "SELECT VERSION()")
	cmd.Env = env
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Version is the server's SELECT VERSION().
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Pid is the server's process id (0 before it started).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop stops the server (SIGTERM to its group, SIGKILL after a bound),
// waits for it, kills whatever else runs on its datadir, and removes Dir.
// It is safe to call again, and on nil.
func (s *Server) Stop() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	var errs []error
	if cmd != nil && !exited(done) {
		_ = signalGroup(cmd.Process.Pid, false)
		if !waitDone(done, stopGrace) {
			_ = signalGroup(cmd.Process.Pid, true)
			if !waitDone(done, stopGrace) {
				errs = append(errs, fmt.Errorf("scratchdb: mariadbd (pid %d) did not exit after SIGKILL", cmd.Process.Pid))
			}
		}
	}
	// Anything else on the datadir, e.g. the bootstrap mariadbd of an
	// install that was cancelled, still dying after the script's group was.
	datadir := s.path("data")
	for _, pid := range pidsUsing(datadir) {
		if err := killUsing(pid, datadir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		// The PathError names what could not be removed.
		errs = append(errs, fmt.Errorf("scratchdb: remove %s: %w", s.Dir, err))
	}
	return errors.Join(errs...)
}

func exited(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func waitDone(done chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
