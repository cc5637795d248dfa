package database

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrBinlogRequirement marks a server that cannot be archived as it is
// set up: the error says what to change.
var ErrBinlogRequirement = errors.New("point-in-time recovery needs a server change")

// BinlogFile is one of the server's binlog files.
type BinlogFile struct {
	Name string
	Size int64
}

// BinlogServer is what the server says about its binary log.
type BinlogServer struct {
	ServerID int64
	Files    []BinlogFile // oldest first
}

// FindBinlogTool looks up mariadb-binlog (or mysqlbinlog) on path.
func FindBinlogTool(path string) (string, error) {
	return lookFirst(path, "mariadb-binlog", "mysqlbinlog")
}

// BinlogStatus checks that the server writes a row-based binlog the user
// may read, and lists its files. A server that does not gets an error
// wrapping ErrBinlogRequirement with the server option or the GRANT.
func (c Client) BinlogStatus(ctx context.Context, f *Files, env []string, user string) (BinlogServer, error) {
	var s BinlogServer
	out, err := c.query(ctx, f, env, "SELECT @@log_bin, @@binlog_format, @@server_id")
	if err != nil {
		return s, err
	}
	fields := strings.Fields(out)
	if len(fields) != 3 {
		return s, fmt.Errorf("unexpected answer to SELECT @@log_bin, @@binlog_format, @@server_id: %q", out)
	}
	if fields[0] != "1" {
		return s, fmt.Errorf("%w: binary logging is off: start the server with --log-bin --binlog-format=ROW and a --server-id of its own", ErrBinlogRequirement)
	}
	if !strings.EqualFold(fields[1], "ROW") {
		return s, fmt.Errorf("%w: binlog_format is %s, and a replay of statements is not exact: run `SET GLOBAL binlog_format=ROW` and set binlog_format=ROW in the server's configuration", ErrBinlogRequirement, fields[1])
	}
	s.ServerID, _ = strconv.ParseInt(fields[2], 10, 64)
	out, err = c.query(ctx, f, env, "SHOW BINARY LOGS")
	if err != nil {
		if strings.Contains(err.Error(), "1227") || strings.Contains(err.Error(), "Access denied") {
			return s, fmt.Errorf("%w: user %s may not read the binlog: run `GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '%s'@'%%'` (MySQL: REPLICATION SLAVE, REPLICATION CLIENT): %v", ErrBinlogRequirement, user, user, err)
		}
		return s, err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		s.Files = append(s.Files, BinlogFile{Name: f[0], Size: n})
	}
	if len(s.Files) == 0 {
		return s, fmt.Errorf("%w: the server lists no binlog files", ErrBinlogRequirement)
	}
	return s, nil
}

// query runs one statement and returns its rows as tab-separated lines.
func (c Client) query(ctx context.Context, f *Files, env []string, q string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.MySQL, "--defaults-extra-file="+f.OptionFile, "--connect-timeout=5", "--batch", "--skip-column-names", "-e", q)
	cmd.Env = append(env, f.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if k := Classify(msg); k != nil {
			return "", fmt.Errorf("%w: %s", k, msg)
		}
		return "", fmt.Errorf("%s: %w: %s", q, err, msg)
	}
	return string(out), nil
}

// StreamBinlogArgv streams the server's binlog from the start of file on,
// as a replica would, into files of the same names in dir, and keeps
// waiting for more (--stop-never).
func StreamBinlogArgv(tool string, f *Files, dir string, serverID uint32, file string) []string {
	return []string{tool, "--defaults-extra-file=" + f.OptionFile, "--read-from-remote-server", "--raw", "--stop-never",
		"--stop-never-slave-server-id=" + strconv.FormatUint(uint64(serverID), 10), "--result-file=" + strings.TrimSuffix(dir, "/") + "/", file}
}

// ReplayBinlogArgv decodes local binlog files as one stream of SQL, from
// start (an offset in the first file) until the first event at or after
// stop (zero: to the end) or stopPos in the last file, only db's events
// when db is set. Run it with
// TZ=UTC: --stop-datetime is read in the local time zone.
func ReplayBinlogArgv(tool string, start int64, stop time.Time, stopPos int64, db string, files []string) []string {
	argv := []string{tool, "--start-position=" + strconv.FormatInt(start, 10)}
	if stopPos > 0 {
		argv = append(argv, "--stop-position="+strconv.FormatInt(stopPos, 10)) // in the last file
	}
	if db != "" {
		argv = append(argv, "--database="+db)
	}
	if !stop.IsZero() {
		argv = append(argv, "--stop-datetime="+stop.UTC().Format("2006-01-02 15:04:05"))
	}
	return append(argv, files...)
}

// BinlogEnd is where the server's binlog ends now: its current file and
// the offset after its last event (SHOW MASTER STATUS).
func (c Client) BinlogEnd(ctx context.Context, f *Files, env []string) (string, int64, error) {
	out, err := c.query(ctx, f, env, "SHOW MASTER STATUS")
	if err != nil {
		return "", 0, err
	}
	fields := strings.Fields(out)
	if len(fields) < 2 {
		return "", 0, fmt.Errorf("SHOW MASTER STATUS answered %q", out)
	}
	pos, err := strconv.ParseInt(fields[1], 10, 64)
	return fields[0], pos, err
}
