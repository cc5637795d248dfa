package database

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ConsistentDumpArgs make one consistent dump with routines, triggers and
// events. --hex-blob keeps BLOBs byte-exact whatever the connection charset;
// --flush-privileges makes restored users and grants take effect at once.
var consistentDumpArgs = []string{"--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--default-character-set=utf8mb4", "--flush-privileges", maxPacketArg}

// maxPacketArg lets the clients read and send packets up to the protocol's
// limit, 1 GiB: mysqldump's default (24 MiB) and mysql's (16 MiB) are below
// what servers allow, and a row the server stored must be dumped and loaded
// whatever the server's own max_allowed_packet. The limit allocates
// nothing; buffers grow only for the rows that need them.
const maxPacketArg = "--max-allowed-packet=1G"

// MaxPacket is the clients' packet limit, maxPacketArg's value.
const MaxPacket = 1 << 30

// ConsistentDumpArgs returns the flags always passed to mysqldump.
func ConsistentDumpArgs() []string { return append([]string(nil), consistentDumpArgs...) }

// Client finds the client binaries.
type Client struct {
	Dump  string // mysqldump or mariadb-dump
	MySQL string // mysql or mariadb
}

// FindClient looks the binaries up on $PATH.
func FindClient() (Client, error) { return FindClientIn(os.Getenv("PATH")) }

// FindClientIn looks the binaries up in path (a PATH value). The error
// names the binary missing and the PATH searched.
func FindClientIn(path string) (Client, error) {
	var c Client
	var err error
	if c.Dump, err = lookFirst(path, "mysqldump", "mariadb-dump"); err != nil {
		return c, err
	}
	if c.MySQL, err = lookFirst(path, "mysql", "mariadb"); err != nil {
		return c, err
	}
	return c, nil
}

// ErrNotFound marks a binary that is not on PATH.
var ErrNotFound = errors.New("not found")

func lookFirst(path string, names ...string) (string, error) {
	for _, n := range names {
		if p, err := LookPath(n, path); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("the MySQL client: %w: neither %s is on PATH=%s: use the agent image (`make image`), which ships it, or install mariadb-client",
		ErrNotFound, strings.Join(names, " nor "), path)
}

// LookPath finds an executable name in path, like exec.LookPath but on a
// PATH given rather than read from the environment. A name with a slash is
// checked as it is.
func LookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		if isExecutable(name) {
			return name, nil
		}
		return "", fmt.Errorf("%s: %w or not executable", name, ErrNotFound)
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue // an empty entry would mean the working directory
		}
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w on PATH=%s", name, ErrNotFound, path)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// DumpArgv is the full mysqldump argv: option file first (it must be), then
// the consistency flags, then the user's args.
func (c Client) DumpArgv(f *Files, userArgs []string) []string {
	argv := []string{c.Dump, "--defaults-extra-file=" + f.OptionFile}
	if log := f.DumpLog(); log != "" {
		argv = append(argv, "--log-error="+log)
	}
	for _, a := range consistentDumpArgs {
		if a == "--single-transaction" && LocksAllTables(userArgs) {
			continue // mysqldump refuses both; the user chose the lock
		}
		argv = append(argv, a)
	}
	return append(argv, userArgs...)
}

// DumpLog is where mysqldump writes its warnings and errors (--log-error),
// in the private directory; "" without one. restic relays a command's
// stderr only as far as it can before it exits, and the reason a dump
// failed must reach the session.
func (f *Files) DumpLog() string {
	if f.Dir == "" {
		return ""
	}
	return filepath.Join(f.Dir, "mysqldump.err")
}

// maxDumpError bounds what DumpError returns.
const maxDumpError = 400

// DumpError returns mysqldump's last error lines from DumpLog, joined into
// one line and bounded, with the values of f's Env (the password) hidden;
// "" when there are none.
func (f *Files) DumpError() string {
	path := f.DumpLog()
	if path == "" {
		return ""
	}
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	// The end of the file holds the error that stopped the dump.
	if st, err := fh.Stat(); err == nil && st.Size() > 4096 {
		_, _ = fh.Seek(st.Size()-4096, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(fh, 4096))
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(strings.ToValidUTF8(l, "?"))
		if l != "" && !strings.HasPrefix(strings.ToLower(l), "warning") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 2 {
		lines = lines[len(lines)-2:]
	}
	out := strings.Join(lines, "; ")
	for _, kv := range f.Env {
		if _, v, ok := strings.Cut(kv, "="); ok && len(v) > 3 {
			out = strings.ReplaceAll(out, v, "***")
		}
	}
	if len(out) > maxDumpError {
		out = strings.ToValidUTF8(out[:maxDumpError], "") + "..."
	}
	return out
}

// LoadArgv is the mysql argv for a restore. --binary-mode keeps \0 and \r
// in the dump as data.
func (c Client) LoadArgv(f *Files, userArgs []string) []string {
	argv := []string{c.MySQL, "--defaults-extra-file=" + f.OptionFile, "--binary-mode", "--default-character-set=utf8mb4", maxPacketArg}
	return append(argv, userArgs...)
}

// Errors from the server, matched with errors.Is.
var (
	ErrAccessDenied = errors.New("access denied")
	ErrUnreachable  = errors.New("database unreachable")
	ErrTLS          = errors.New("TLS handshake with the database failed")
	// ErrConnectionLost: the database answered, then the connection ended
	// mid-query (2013, 2006): not the same as a database that never did.
	ErrConnectionLost = errors.New("the connection to the database was lost mid-query")
	// ErrPacketTooLarge: a statement or row passed a max_allowed_packet.
	ErrPacketTooLarge = errors.New("a packet passed max_allowed_packet")
)

// Classify maps client stderr to a sentinel, or nil.
func Classify(stderr string) error {
	s := strings.ToLower(stderr)
	switch {
	case strings.Contains(s, "access denied"):
		return ErrAccessDenied
	case strings.Contains(s, "ssl") || strings.Contains(s, "tls") || strings.Contains(s, "certificate"):
		return ErrTLS
	case strings.Contains(s, "max_allowed_packet") || strings.Contains(s, "packet bigger than") || strings.Contains(s, "packet too large"):
		return ErrPacketTooLarge
	case strings.Contains(s, "lost connection") && (strings.Contains(s, "initial communication packet") || strings.Contains(s, "handshake")):
		return ErrUnreachable // it never answered as a database
	case strings.Contains(s, "lost connection") || strings.Contains(s, "server has gone away"):
		return ErrConnectionLost
	case strings.Contains(s, "can't connect") || strings.Contains(s, "unknown server host") || strings.Contains(s, "connection refused"):
		return ErrUnreachable
	}
	return nil
}

// ServerPacket asks the server for its max_allowed_packet, in bytes.
func (c Client) ServerPacket(ctx context.Context, f *Files, env []string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.MySQL, "--defaults-extra-file="+f.OptionFile, "--connect-timeout=5", "--batch", "--skip-column-names", "-e", "SELECT @@max_allowed_packet")
	cmd.Env = append(env, f.Env...)
	out, err := cmd.Output()
	if err != nil {
		return 0, err
	}
	var n int64
	if _, err := fmt.Sscan(strings.TrimSpace(string(out)), &n); err != nil {
		return 0, fmt.Errorf("max_allowed_packet %q: %w", strings.TrimSpace(string(out)), err)
	}
	return n, nil
}

// WaitReady runs SELECT 1 until it succeeds or timeout. Access denied and TLS
// errors stop at once: waiting will not fix them.
func (c Client) WaitReady(ctx context.Context, f *Files, env []string, timeout, every time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		cmd := exec.CommandContext(cctx, c.MySQL, "--defaults-extra-file="+f.OptionFile, "--connect-timeout=5", "--batch", "-e", "SELECT 1")
		cmd.Env = append(env, f.Env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		ccancel()
		if err == nil {
			return nil
		}
		last = strings.TrimSpace(stderr.String())
		if last == "" {
			last = err.Error()
		}
		if k := Classify(last); k == ErrAccessDenied || k == ErrTLS {
			return fmt.Errorf("%w: %s", k, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w after %s: %s", ErrUnreachable, timeout, last)
		case <-time.After(every):
		}
	}
}
