// Package database builds the mysqldump and mysql invocations the agent runs:
// connection options in a 0600 file, the password in the environment, no
// shell, and a readiness check. It knows nothing of Kubernetes or restic.
package database

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultPort is MySQL's port.
const DefaultPort = 3306

// Conn is how to reach one server.
type Conn struct {
	Host     string
	Port     int
	User     string
	Password string
	// CABundle is a PEM CA; when set the server's certificate is verified.
	CABundle           []byte
	InsecureSkipVerify bool
}

// ErrBadAddress marks an address that cannot be parsed.
var ErrBadAddress = errors.New("bad database address")

// ParseAddress accepts the forms users already have: tcp(host:port)/ (KubeDB),
// mysql://host:port, host:port and host.
func ParseAddress(s string) (host string, port int, err error) {
	orig := s
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "tcp("):
		end := strings.Index(s, ")")
		if end < 0 {
			return "", 0, fmt.Errorf("%w %q: missing ')'", ErrBadAddress, orig)
		}
		s = s[4:end]
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil {
			return "", 0, fmt.Errorf("%w %q: %v", ErrBadAddress, orig, err)
		}
		s = u.Host
	default:
		s = strings.TrimSuffix(s, "/")
	}
	if s == "" {
		return "", 0, fmt.Errorf("%w %q: no host", ErrBadAddress, orig)
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		// No port: the whole thing is the host.
		if strings.ContainsAny(s, "/ ") {
			return "", 0, fmt.Errorf("%w %q", ErrBadAddress, orig)
		}
		return strings.Trim(s, "[]"), DefaultPort, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("%w %q: port %q", ErrBadAddress, orig, p)
	}
	if h == "" {
		return "", 0, fmt.Errorf("%w %q: no host", ErrBadAddress, orig)
	}
	return h, n, nil
}

// Files are the client's connection files in a private directory.
type Files struct {
	Dir        string
	OptionFile string
	// Env carries the password (MYSQL_PWD) for the child processes.
	Env []string
}

// WriteFiles writes a 0600 option file (and ca.crt when a CA is set) into
// a new private directory under scratch. Remove Dir when done.
func (c Conn) WriteFiles(scratch string) (*Files, error) {
	dir, err := os.MkdirTemp(scratch, "db-")
	if err != nil {
		return nil, fmt.Errorf("scratch directory %s: %w", scratch, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("[client]\n")
	fmt.Fprintf(&b, "user=%s\n", quote(c.User))
	fmt.Fprintf(&b, "host=%s\n", quote(c.Host))
	fmt.Fprintf(&b, "port=%d\n", c.Port)
	b.WriteString("protocol=tcp\n")
	if len(c.CABundle) > 0 {
		ca := filepath.Join(dir, "ca.crt")
		if err := os.WriteFile(ca, c.CABundle, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		fmt.Fprintf(&b, "ssl-ca=%s\n", quote(ca))
		if !c.InsecureSkipVerify {
			// MariaDB's clients verify only when asked; MySQL's read a different group.
			b.WriteString("[client-mariadb]\nssl-verify-server-cert\n")
		}
	}
	opt := filepath.Join(dir, "client.cnf")
	if err := os.WriteFile(opt, []byte(b.String()), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Files{Dir: dir, OptionFile: opt, Env: []string{"MYSQL_PWD=" + c.Password}}, nil
}

// quote writes an option-file value in double quotes; '#' would otherwise start a comment.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\t", `\t`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}
