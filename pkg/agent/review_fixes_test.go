package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
)

// waitTimeout is Stash's number of seconds, or a Go duration as written.
func TestWaitTimeoutUnits(t *testing.T) {
	for in, want := range map[string]time.Duration{"30": 30 * time.Second, "2m": 2 * time.Minute, "1h30m": 90 * time.Minute, "0": 0} {
		o, err := parseStep("mysql-backup", []string{"--wait-timeout=" + in})
		if err != nil || o.WaitTimeout != want {
			t.Errorf("waitTimeout %q: %s, %v; want %s", in, o.WaitTimeout, err, want)
		}
	}
	for _, bad := range []string{"-5", "soon", "-1m"} {
		if _, err := parseStep("mysql-backup", []string{"--wait-timeout=" + bad}); err == nil {
			t.Errorf("waitTimeout %q accepted", bad)
		}
	}
}

// A statement the user may not run is not a refused login: the message
// must not send the user to fix a password, and keeps the state text.
func TestSQLErrorPrivilegeIsNotCredentials(t *testing.T) {
	ab := &appcatalog.AppBinding{}
	ab.Name = "db"
	for _, stderr := range []string{
		"ERROR 1227 (42000) at line 18: Access denied; you need (at least one of) the SUPER privilege(s) for this operation",
		"ERROR 1044 (42000) at line 3: Access denied for user 'app'@'%' to database 'shop'",
	} {
		err := sqlError(ab, stderr, errors.New("exit status 1"), true, 0)
		if errors.Is(err, database.ErrAccessDenied) || strings.Contains(err.Error(), "username/password") || !strings.Contains(err.Error(), "partially restored") {
			t.Errorf("%s\n-> %v", stderr, err)
		}
	}
	if err := sqlError(ab, "ERROR 1045 (28000): Access denied for user 'app'@'10.0.0.1' (using password: YES)", errors.New("exit status 1"), false, 0); !errors.Is(err, database.ErrAccessDenied) {
		t.Errorf("1045 is a refused login: %v", err)
	}
	if err := sqlError(ab, "ERROR 2026 (HY000): TLS/SSL error: self-signed certificate", errors.New("exit status 1"), false, 0); !errors.Is(err, database.ErrTLS) {
		t.Errorf("2026 is a TLS failure: %v", err)
	}
	if err := sqlError(ab, "", errors.New("exit status 1"), false, 0); !strings.Contains(err.Error(), "wrote no error") {
		t.Errorf("empty stderr: %v", err)
	}
}

// No text after a value's opening quote reaches a message, however the
// server broke the value (quotes inside it, a newline).
func TestSQLErrorUnbalancedQuotes(t *testing.T) {
	ab := &appcatalog.AppBinding{}
	for _, stderr := range []string{
		"ERROR 1062 (23000) at line 9: Duplicate entry 'O'Brien-s3cret' for key 'users.name'",
		"ERROR 1062 (23000) at line 9: Duplicate entry 'line1-s3cret\nline2' for key 'k'",
		"ERROR 1062 (23000) at line 9: Duplicate entry 'a'S3CRET'b' for key 'k'",
	} {
		msg := sqlError(ab, stderr, errors.New("exit status 1"), true, 0).Error()
		if strings.Contains(strings.ToLower(msg), "s3cret") || strings.Contains(msg, "Brien") {
			t.Errorf("%q\n-> %q", stderr, msg)
		}
	}
}

// An AppBinding of another database type names itself and the fix.
func TestUnknownTypeNamesTheFix(t *testing.T) {
	ab := &appcatalog.AppBinding{Spec: appcatalog.AppBindingSpec{Type: "kubedb.com/postgres", Version: "16"}}
	ab.Name = "pg"
	_, _, err := resolveTask(stashv1beta1.TaskRef{}, ab, false)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "AppBinding pg") || !strings.Contains(err.Error(), "spec.task.name") {
		t.Errorf("unknown type: %v", err)
	}
}

// A connection lost mid-dump is not "did not answer"; a packet over the
// server's limit names max_allowed_packet and the hex doubling.
func TestTrueCauseMessages(t *testing.T) {
	ab := &appcatalog.AppBinding{}
	ab.Name = "mysql"
	lost := dbError(ab, fmt.Errorf("%w: %w", database.Classify("mysqldump: Error 2013: Lost connection to server during query when dumping table `t` at row: 0"), errors.New("exit status 2"))).Error()
	if strings.Contains(lost, "did not answer") || !strings.Contains(lost, "closed the connection mid-query") || !strings.Contains(lost, "max_allowed_packet") {
		t.Errorf("lost mid-dump: %s", lost)
	}
	gone := dbError(ab, fmt.Errorf("%w: %s", database.ErrUnreachable, "Can't connect")).Error()
	if !strings.Contains(gone, "did not answer") {
		t.Errorf("unreachable: %s", gone)
	}
	big := sqlError(ab, "ERROR 1153 (08S01) at line 27: Got a packet bigger than 'max_allowed_packet' bytes", errors.New("exit status 1"), true, 0)
	if !errors.Is(big, database.ErrPacketTooLarge) || !strings.Contains(big.Error(), "line 27") || !strings.Contains(big.Error(), "hex") || !strings.Contains(big.Error(), "partially restored") {
		t.Errorf("packet too large on restore: %v", big)
	}
	mid := sqlError(ab, "ERROR 2013 (HY000): Lost connection to server during query", errors.New("exit status 1"), false, 0)
	if !errors.Is(mid, database.ErrConnectionLost) || strings.Contains(mid.Error(), "did not answer") {
		t.Errorf("lost before any statement applied: %v", mid)
	}
}

// A server closes the connection on a packet over its limit; the client
// sees only "gone away". Knowing the server's limit, the message says it.
func TestGoneAwayNamesThePacketLimit(t *testing.T) {
	ab := &appcatalog.AppBinding{}
	err := sqlError(ab, "ERROR 2006 (HY000) at line 50: Server has gone away", errors.New("exit status 1"), true, 64<<20)
	for _, w := range []string{"line 50", "64.000 MiB", "max_allowed_packet", "hex", "SET GLOBAL max_allowed_packet", "partially restored"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q lacks %q", err, w)
		}
	}
	if !errors.Is(err, database.ErrConnectionLost) {
		t.Errorf("not ErrConnectionLost: %v", err)
	}
	// A server that allows what the client does: no packet advice.
	if err := sqlError(ab, "ERROR 2006 (HY000) at line 50: Server has gone away", errors.New("exit status 1"), true, database.MaxPacket); strings.Contains(err.Error(), "SET GLOBAL") {
		t.Errorf("packet advice for a server at the client's limit: %v", err)
	}
}
