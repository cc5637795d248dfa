// mysql's errors during a restore, turned into messages that say where
// (the table, or the statement's line) and hold no data from the dump.
package agent

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

var sqlErrLine = regexp.MustCompile(`ERROR (\d+) \(([0-9A-Za-z]+)\)(?: at line (\d+))?:?\s*(.*)`)

// Client error codes of a server that was never reached, and of one that
// went away mid-query.
var (
	connErrors = map[string]bool{"2002": true, "2003": true, "2005": true}
	lostErrors = map[string]bool{"2006": true, "2013": true}
)

// sqlError turns mysql's stderr into a message with the statement's line
// number in the dump and no data. Only a refused login (1045) is blamed on
// the credentials: 1044 and 1227 ("you need the SUPER privilege", a dump's
// DEFINER) are statements the user may not run, and say so.
// serverPacket is the server's max_allowed_packet when the connection was
// lost (0: not asked, or unknown).
func sqlError(ab *appcatalog.AppBinding, stderr string, err error, touched bool, serverPacket int64) error {
	return sqlErrorIn(ab, "", stderr, err, touched, serverPacket)
}

// sqlErrorIn is sqlError for a load over several connections: section
// names the table the failed client was loading (`db`.`table`), since its
// line numbers count that client's input, not the dump's.
func sqlErrorIn(ab *appcatalog.AppBinding, section, stderr string, err error, touched bool, serverPacket int64) error {
	m := sqlErrLine.FindStringSubmatch(stderr)
	where := ""
	switch {
	case section != "":
		where = " while loading " + section
	case m != nil && m[3] != "":
		where = " at line " + m[3] + " of the dump"
	}
	code := ""
	if m != nil {
		code = m[1]
	}
	kind := database.Classify(stderr)
	switch {
	case code == "1045" || code == "" && errors.Is(kind, database.ErrAccessDenied):
		return dbError(ab, fmt.Errorf("%w: %s", database.ErrAccessDenied, elide(firstLine(stderr))))
	case code == "2026" || code == "" && errors.Is(kind, database.ErrTLS):
		return dbError(ab, fmt.Errorf("%w: %s", database.ErrTLS, elide(firstLine(stderr))))
	case !touched && (connErrors[code] || code == "" && errors.Is(kind, database.ErrUnreachable)):
		return dbError(ab, fmt.Errorf("%w: %s", database.ErrUnreachable, elide(firstLine(stderr))))
	case !touched && (lostErrors[code] || code == "" && errors.Is(kind, database.ErrConnectionLost)):
		return dbError(ab, fmt.Errorf("%w: %s", database.ErrConnectionLost, elide(firstLine(stderr))))
	}
	state := "the database was not changed"
	if touched {
		state = "statements before it were applied, so the database is partially restored: fix the cause, then restore again into an empty database"
	}
	if lostErrors[code] && serverPacket > 0 && serverPacket < database.MaxPacket {
		return fmt.Errorf("%w: SQL error %s%s: the server closed the connection; its max_allowed_packet is %s, below the 1 GiB the restore may send, and a statement larger than that is the usual cause (dumps write BLOBs in hex, twice their size): raise it to at least twice the largest BLOB or TEXT value (`SET GLOBAL max_allowed_packet=1073741824`), then restore again; else see the server's error log; %s",
			database.ErrConnectionLost, code, where, session.HumanBytes(serverPacket), state)
	}
	if code == "1153" || code == "2020" || code == "1301" {
		// The dump writes BLOBs in hex, twice their size.
		return fmt.Errorf("%w: SQL error %s%s: a statement is larger than the server's max_allowed_packet: raise it to at least twice the largest BLOB or TEXT value (dumps write BLOBs in hex), at most 1 GiB (`SET GLOBAL max_allowed_packet=1073741824`), then restore again; %s", database.ErrPacketTooLarge, code, where, state)
	}
	if code == "1290" {
		// --read-only: the target is held read-only (by this restore, or
		// before it) and the user may not write through it.
		secret := ""
		if ab.Spec.Secret != nil {
			secret = ab.Spec.Secret.Name
		}
		return fmt.Errorf("SQL error 1290: the server is read-only, and the user in Secret %s (AppBinding %s) may not write while it is: `GRANT READ_ONLY ADMIN ON *.* TO` that user (MariaDB 10.11 and later; SUPER before, and on MySQL), or set read_only=OFF if the server should take writes; %s", secret, ab.Name, state)
	}
	if m != nil {
		text := m[4]
		if i := strings.Index(text, " near "); i >= 0 {
			text = text[:i]
		}
		return fmt.Errorf("SQL error %s (%s)%s: %s; %s", m[1], m[2], where, strings.TrimSpace(elide(text)), state)
	}
	line := elide(firstLine(stderr))
	if line == "" {
		line = "it wrote no error"
	}
	return fmt.Errorf("mysql failed (%v): %s; %s", err, line, state)
}

// sqlCode is the error code of mysql's ERROR line, "" without one.
func sqlCode(stderr string) string {
	if m := sqlErrLine.FindStringSubmatch(stderr); m != nil {
		return m[1]
	}
	return ""
}

// elide cuts a server message at its first quote: what follows may be data
// from the dump (a duplicate key's value), and the server neither escapes
// quotes inside it nor keeps it on one line.
func elide(s string) string {
	if i := strings.IndexAny(s, "'\""); i >= 0 {
		return strings.TrimRight(s[:i], " ") + " '…'"
	}
	return s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
