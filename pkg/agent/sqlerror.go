// mysql's errors during a restore, turned into messages that name the
// statement's line and hold no data from the dump.
package agent

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
)

var sqlErrLine = regexp.MustCompile(`ERROR (\d+) \(([0-9A-Za-z]+)\)(?: at line (\d+))?:?\s*(.*)`)

// Client error codes of a server that was never reached or went away.
var connErrors = map[string]bool{"2002": true, "2003": true, "2005": true, "2006": true, "2013": true}

// sqlError turns mysql's stderr into a message with the statement's line
// number in the dump and no data. Only a refused login (1045) is blamed on
// the credentials: 1044 and 1227 ("you need the SUPER privilege", a dump's
// DEFINER) are statements the user may not run, and say so.
func sqlError(ab *appcatalog.AppBinding, stderr string, err error, touched bool) error {
	m := sqlErrLine.FindStringSubmatch(stderr)
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
	}
	state := "the database was not changed"
	if touched {
		state = "statements before it were applied, so the database is partially restored: fix the cause, then restore again into an empty database"
	}
	if m != nil {
		text := m[4]
		if i := strings.Index(text, " near "); i >= 0 {
			text = text[:i]
		}
		where := ""
		if m[3] != "" {
			where = " at line " + m[3] + " of the dump"
		}
		return fmt.Errorf("SQL error %s (%s)%s: %s; %s", m[1], m[2], where, strings.TrimSpace(elide(text)), state)
	}
	line := elide(firstLine(stderr))
	if line == "" {
		line = "it wrote no error"
	}
	return fmt.Errorf("mysql failed (%v): %s; %s", err, line, state)
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
