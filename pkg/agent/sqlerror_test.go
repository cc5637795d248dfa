package agent

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
)

const (
	notChanged = "the database was not changed"
	partial    = "partially restored"
)

func sqlAppBinding() *appcatalog.AppBinding {
	return &appcatalog.AppBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "shopdb", Namespace: "ns"},
		Spec:       appcatalog.AppBindingSpec{Secret: &corev1.LocalObjectReference{Name: "shopdb-auth"}},
	}
}

// mysql's stderr becomes a message with the error, its line in the dump
// and what state the database is in; values quoted from the dump never
// appear in it.
func TestSQLError(t *testing.T) {
	exit := errors.New("exit status 1")
	cases := []struct {
		name    string
		section string // what the failed connection was loading
		stderr  string
		touched bool
		want    string   // the whole message, when set
		has     []string // in the message
		hasNot  []string // never in the message
		is      error    // errors.Is target, when set
	}{
		{
			name:   "syntax error: code, state, line of the dump; the near clause is cut",
			stderr: "ERROR 1064 (42000) at line 12: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near 'hunter2-s3cr3t' at line 1\n",
			want:   "SQL error 1064 (42000) at line 12 of the dump: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use; " + notChanged,
		},
		{
			name:    "over several connections: the table, not the client's line, says where",
			section: "`shop`.`orders`",
			stderr:  "ERROR 1213 (40001) at line 1362: Deadlock found when trying to get lock; try restarting transaction",
			touched: true,
			has:     []string{"SQL error 1213 (40001) while loading `shop`.`orders`: Deadlock found", partial},
			hasNot:  []string{"line 1362"},
		},
		{
			name:   "read-only: the grant that lets the restore write through it",
			stderr: "ERROR 1290 (HY000) at line 40: The MariaDB server is running with the --read-only option so it cannot execute this statement\n",
			has:    []string{"SQL error 1290", "READ_ONLY ADMIN", "Secret shopdb-auth", notChanged},
		},
		{
			name:    "the same error after statements were applied",
			stderr:  "ERROR 1064 (42000) at line 12: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near 'hunter2-s3cr3t' at line 1",
			touched: true,
			has:     []string{"SQL error 1064 (42000) at line 12 of the dump", partial, "restore again into an empty database"},
			hasNot:  []string{"hunter2-s3cr3t", notChanged},
		},
		{
			name:    "duplicate entry: the value and key are elided",
			stderr:  "ERROR 1062 (23000) at line 40: Duplicate entry 'alice@example.com' for key 'users.email'",
			touched: true,
			want:    "SQL error 1062 (23000) at line 40 of the dump: Duplicate entry '…'; statements before it were applied, so the database is partially restored: fix the cause, then restore again into an empty database",
		},
		{
			name:   "double-quoted and escaped values are elided",
			stderr: `ERROR 1366 (HY000) at line 7: Incorrect integer value: "tok\"en-s3cr3t" for column 'n' at row 1`,
			has:    []string{"SQL error 1366 (HY000) at line 7 of the dump: Incorrect integer value: '…'", notChanged},
			hasNot: []string{"s3cr3t"},
		},
		{
			name:   "an error without a line number",
			stderr: "ERROR 1049 (42000): Unknown database 'shop_2024'",
			want:   "SQL error 1049 (42000): Unknown database '…'; " + notChanged,
		},
		{
			name:   "the ERROR line after a warning",
			stderr: "mysql: [Warning] something about options.\nERROR 1146 (42S02) at line 3: Table 'shop.orders' doesn't exist\n",
			want:   "SQL error 1146 (42S02) at line 3 of the dump: Table '…'; " + notChanged,
		},
		{
			name:   "access denied (1045): the credentials in the AppBinding's Secret",
			stderr: "ERROR 1045 (28000): Access denied for user 'backup'@'10.1.2.3' (using password: YES)\n",
			has:    []string{"refused the credentials", "Secret shopdb-auth", "AppBinding shopdb", "fix username/password", "ERROR 1045 (28000)"},
			hasNot: []string{notChanged, "\n"},
			is:     database.ErrAccessDenied,
		},
		{
			name:   "unreachable (2003) before anything ran",
			stderr: "ERROR 2003 (HY000): Can't connect to MySQL server on 'shopdb.ns.svc:3306' (111)",
			has:    []string{"the database of AppBinding shopdb did not answer", "ERROR 2003 (HY000)"},
			is:     database.ErrUnreachable,
		},
		{
			name:   "unreachable (2002) before anything ran",
			stderr: "ERROR 2002 (HY000): Can't connect to local MySQL server through socket '/run/mysqld/mysqld.sock' (2)",
			has:    []string{"the database of AppBinding shopdb did not answer", "ERROR 2002 (HY000)"},
			is:     database.ErrUnreachable,
		},
		{
			name:    "connection lost mid-restore is a statement's failure: partially restored",
			stderr:  "ERROR 2013 (HY000) at line 1234: Lost connection to MySQL server during query",
			touched: true,
			want:    "SQL error 2013 (HY000) at line 1234 of the dump: Lost connection to MySQL server during query; statements before it were applied, so the database is partially restored: fix the cause, then restore again into an empty database",
		},
		{
			name:   "stderr without an ERROR line: the first line, quotes elided",
			stderr: "mysql: unknown variable 'password=hunter2-s3cr3t'\nusage: ...\n",
			want:   "mysql failed (exit status 1): mysql: unknown variable '…'; " + notChanged,
		},
		{
			name:    "stderr without an ERROR line after statements ran",
			stderr:  "Killed\n",
			touched: true,
			has:     []string{"mysql failed (exit status 1): Killed;", partial},
			hasNot:  []string{notChanged},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := sqlErrorIn(sqlAppBinding(), c.section, c.stderr, exit, c.touched, 0)
			if err == nil {
				t.Fatal("sqlError returned nil")
			}
			msg := err.Error()
			if c.want != "" && msg != c.want {
				t.Errorf("message\n %q\nwant\n %q", msg, c.want)
			}
			for _, s := range c.has {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not say %q", msg, s)
				}
			}
			for _, s := range c.hasNot {
				if strings.Contains(msg, s) {
					t.Errorf("message %q says %q", msg, s)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, c.is)
			}
			if c.is == nil && (errors.Is(err, database.ErrAccessDenied) || errors.Is(err, database.ErrUnreachable)) {
				t.Errorf("a SQL error is classified as a connection error: %v", err)
			}
		})
	}
}

// No value from the dump survives into a SQL error's message, whichever
// error mysql quotes it in and whether or not statements were applied.
func TestSQLErrorNeverQuotesTheDump(t *testing.T) {
	const secret = "sk_live_9f8e7d6c5b4a"
	for _, line := range []string{
		"ERROR 1064 (42000) at line 2: You have an error in your SQL syntax; check the manual near '" + secret + "' at line 1",
		"ERROR 1064 (42000) at line 2: You have an error in your SQL syntax near \"" + secret + "\"",
		"ERROR 1062 (23000) at line 9: Duplicate entry '" + secret + "' for key 'PRIMARY'",
		"ERROR 1062 (23000) at line 9: Duplicate entry '" + secret + "-1' for key 'tokens.token'",
		"ERROR 1406 (22001) at line 5: Data too long for column 'note' at row 1 value '" + secret + "'",
		"ERROR 1292 (22007) at line 5: Incorrect datetime value: '" + secret + "' for column 'created' at row 3",
		"ERROR 1366 (HY000) at line 5: Incorrect string value: '\\x" + secret + "' for column 'n' at row 1",
		"mysql: unknown option '--" + secret + "'",
	} {
		for _, touched := range []bool{false, true} {
			msg := sqlError(sqlAppBinding(), line, errors.New("exit status 1"), touched, 0).Error()
			if strings.Contains(msg, secret) || strings.Contains(msg, "9f8e7d") {
				t.Errorf("sqlError(%q, touched=%v) = %q: it quotes the dump", line, touched, msg)
			}
		}
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                            "",
		"one":                         "one",
		"one\ntwo\n":                  "one",
		"\n\n  ERROR 1064 (42000)\nx": "ERROR 1064 (42000)",
		"  padded  ":                  "padded",
		"trailing \ntwo":              "trailing ",
	} {
		if got := firstLine(in); got != want {
			t.Errorf("firstLine(%q) = %q, want %q", in, got, want)
		}
	}
}
