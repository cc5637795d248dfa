package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// MariaDB is a private mariadbd on 127.0.0.1 with a user that has all privileges.
type MariaDB struct {
	Name     string
	Host     string
	Port     int
	Socket   string
	DataDir  string
	User     string
	Password string
	Process  *Process
	optFile  string
	extra    []string
	detach   bool
}

// MariaDBOptions tune one server.
type MariaDBOptions struct {
	// Extra server flags, e.g. TLS files.
	ExtraArgs []string
}

func startMariaDB(ctx context.Context, dir, name string, opts MariaDBOptions, detach bool) (*MariaDB, error) {
	installDB, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		return nil, fmt.Errorf("mariadb-install-db not found: run hack/install-mariadb.sh: %w", err)
	}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	m := &MariaDB{Name: name, Host: "127.0.0.1", DataDir: filepath.Join(dir, name, "data"), User: "stash", detach: detach, extra: opts.ExtraArgs}
	m.Socket = filepath.Join(dir, name, "mysqld.sock")
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return nil, err
	}
	// Each server has its own tmpdir: a mariadbd that starts removes every
	// #sql* file in its tmpdir, and so broke another server's bootstrap
	// running at the same moment (two test packages) when they shared /tmp.
	if err := os.MkdirAll(m.tmpDir(), 0o700); err != nil {
		return nil, err
	}
	inst := exec.CommandContext(ctx, installDB, "--no-defaults", "--datadir="+m.DataDir, "--user="+u.Username,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve")
	inst.Env = append(os.Environ(), "TMPDIR="+m.tmpDir())
	if out, err := inst.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mariadb-install-db for %s: %w: %s", name, err, out)
	}
	if m.Port, err = FreePort(); err != nil {
		return nil, err
	}
	if err := m.start(ctx); err != nil {
		return nil, err
	}
	m.Password = randomPassword()
	// Root over the socket has no password yet; create the test user.
	setup := fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'; GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%' WITH GRANT OPTION; FLUSH PRIVILEGES;",
		m.User, m.Password, m.User)
	cmd := exec.CommandContext(ctx, "mariadb", "--no-defaults", "--socket="+m.Socket, "-uroot")
	cmd.Stdin = strings.NewReader(setup)
	if out, err := cmd.CombinedOutput(); err != nil {
		m.Stop()
		return nil, fmt.Errorf("create user on %s: %w: %s", name, err, out)
	}
	m.optFile = filepath.Join(dir, name, "client.cnf")
	if err := m.RewriteOptionFile(); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

func (m *MariaDB) start(ctx context.Context) error {
	server, err := lookSbin("mariadbd")
	if err != nil {
		return err
	}
	u, _ := user.Current()
	args := append([]string{
		"--no-defaults",
		"--datadir=" + m.DataDir,
		"--tmpdir=" + m.tmpDir(),
		"--socket=" + m.Socket,
		"--port=" + strconv.Itoa(m.Port),
		"--bind-address=127.0.0.1",
		"--skip-name-resolve",
		"--pid-file=" + filepath.Join(filepath.Dir(m.DataDir), "mysqld.pid"),
		"--user=" + u.Username,
		"--innodb-buffer-pool-size=128M",
		"--innodb-log-file-size=64M",
		"--innodb-flush-log-at-trx-commit=2",
		"--max-allowed-packet=256M",
		"--event-scheduler=OFF",
		"--log-bin-trust-function-creators=1",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci",
	}, m.extra...)
	p, err := start(filepath.Dir(m.DataDir), "mariadbd", server, args, nil, m.detach)
	if err != nil {
		return err
	}
	m.Process = p
	return p.waitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, "mariadb-admin", "--no-defaults", "--socket="+m.Socket, "-uroot", "--connect-timeout=2", "ping")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
}

// tmpDir is the server's own temporary directory, beside its datadir.
func (m *MariaDB) tmpDir() string { return filepath.Join(filepath.Dir(m.DataDir), "tmp") }

// Restart stops the server and starts it again on the same port.
func (m *MariaDB) Restart(ctx context.Context) error {
	m.Process.Stop(30 * time.Second)
	return m.start(ctx)
}

// Stop stops the server.
func (m *MariaDB) Stop() { m.Process.Stop(30 * time.Second) }

// Addr is host:port.
func (m *MariaDB) Addr() string { return hostPort(m.Port) }

// RewriteOptionFile writes the option file again after User or Password changed.
func (m *MariaDB) RewriteOptionFile() error {
	return writeFile(m.optFile, []byte(fmt.Sprintf("[client]\nuser=%s\npassword=%s\nhost=127.0.0.1\nport=%d\ndefault-character-set=utf8mb4\n", m.User, m.Password, m.Port)))
}

// OptionFile is a 0600 client option file with the test user's credentials.
func (m *MariaDB) OptionFile() string { return m.optFile }

// Exec runs SQL through the mariadb client over TCP, as the test user.
func (m *MariaDB) Exec(ctx context.Context, sql string, args ...string) (string, error) {
	a := append([]string{"--defaults-extra-file=" + m.optFile, "--batch", "--skip-column-names"}, args...)
	cmd := exec.CommandContext(ctx, "mariadb", a...)
	cmd.Stdin = strings.NewReader(sql)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("mariadb on %s: %w: %s", m.Name, err, stderr.String())
	}
	return out.String(), nil
}

func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: run hack/install-mariadb.sh", name)
}

func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "pw" + hex.EncodeToString(b)
}

// StartMariaDB starts one MariaDB server alone, in dir (for tests that need
// no control plane). Stop it with Stop.
func StartMariaDB(ctx context.Context, dir, name string, o MariaDBOptions) (*MariaDB, error) {
	return startMariaDB(ctx, dir, name, o, false)
}
