package agent

import (
	"errors"
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
		err := sqlError(ab, stderr, errors.New("exit status 1"), true)
		if errors.Is(err, database.ErrAccessDenied) || strings.Contains(err.Error(), "username/password") || !strings.Contains(err.Error(), "partially restored") {
			t.Errorf("%s\n-> %v", stderr, err)
		}
	}
	if err := sqlError(ab, "ERROR 1045 (28000): Access denied for user 'app'@'10.0.0.1' (using password: YES)", errors.New("exit status 1"), false); !errors.Is(err, database.ErrAccessDenied) {
		t.Errorf("1045 is a refused login: %v", err)
	}
	if err := sqlError(ab, "ERROR 2026 (HY000): TLS/SSL error: self-signed certificate", errors.New("exit status 1"), false); !errors.Is(err, database.ErrTLS) {
		t.Errorf("2026 is a TLS failure: %v", err)
	}
	if err := sqlError(ab, "", errors.New("exit status 1"), false); !strings.Contains(err.Error(), "wrote no error") {
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
		msg := sqlError(ab, stderr, errors.New("exit status 1"), true).Error()
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
