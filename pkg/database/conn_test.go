package database

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseAddress(t *testing.T) {
	cases := []struct {
		in   string
		host string
		port int
	}{
		{"tcp(mysql.demo.svc:3306)/", "mysql.demo.svc", 3306},
		{"tcp(10.0.0.5:3307)/db?tls=true", "10.0.0.5", 3307},
		{"mysql://db.example.com:3310", "db.example.com", 3310},
		{"mysql://db.example.com", "db.example.com", 3306},
		{"db:3306", "db", 3306},
		{"db", "db", 3306},
		{"[::1]:3306", "::1", 3306},
	}
	for _, c := range cases {
		h, p, err := ParseAddress(c.in)
		if err != nil || h != c.host || p != c.port {
			t.Errorf("ParseAddress(%q) = %q, %d, %v; want %q, %d", c.in, h, p, err, c.host, c.port)
		}
	}
	for _, bad := range []string{"", "tcp(db:3306", "db:99999", "db:port", "tcp()/", "a b"} {
		if _, _, err := ParseAddress(bad); !errors.Is(err, ErrBadAddress) {
			t.Errorf("ParseAddress(%q): err %v, want ErrBadAddress", bad, err)
		}
	}
}

func TestWriteFilesKeepsThePasswordOutOfFilesAndArgv(t *testing.T) {
	c := Conn{Host: "db", Port: 3306, User: `ro#ot"x`, Password: "s3cret#pw", CABundle: []byte("PEM")}
	f, err := c.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.OptionFile)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(f.OptionFile)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("option file mode %v, want 0600", st.Mode().Perm())
	}
	if strings.Contains(string(b), c.Password) {
		t.Error("the password is in the option file; it belongs in MYSQL_PWD only")
	}
	if !strings.Contains(string(b), `user="ro#ot"x"`) || !strings.Contains(string(b), "ssl-verify-server-cert") {
		t.Errorf("option file:\n%s", b)
	}
	if len(f.Env) != 1 || f.Env[0] != "MYSQL_PWD="+c.Password {
		t.Errorf("Env = %v", f.Env)
	}
	argv := Client{Dump: "mysqldump"}.DumpArgv(f, []string{"--databases", "a;rm -rf /"})
	if argv[1] != "--defaults-extra-file="+f.OptionFile || argv[len(argv)-1] != "a;rm -rf /" {
		t.Errorf("argv = %v", argv)
	}
	for _, a := range argv {
		if strings.Contains(a, c.Password) {
			t.Errorf("the password is on the command line: %v", argv)
		}
	}
}

func TestDumpError(t *testing.T) {
	dir := t.TempDir()
	f := &Files{Dir: dir, Env: []string{"MYSQL_PWD=s3cret-pass"}}
	log := f.DumpLog()
	if !strings.HasPrefix(log, dir+string(os.PathSeparator)) {
		t.Fatalf("DumpLog() = %q, want a file in %s", log, dir)
	}
	if got := f.DumpError(); got != "" {
		t.Fatalf("no log: %q", got)
	}
	if got := (&Files{}).DumpLog(); got != "" {
		t.Fatalf("DumpLog() without a directory = %q", got)
	}
	body := strings.Repeat("Warning: column statistics not supported\n", 200) +
		"mysqldump: first error s3cret-pass\n\n" +
		"mysqldump: Error 2013: Lost connection to server during query when dumping table `t1` at row: 7\n"
	if err := os.WriteFile(log, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	got := f.DumpError()
	want := "mysqldump: first error ***; mysqldump: Error 2013: Lost connection to server during query when dumping table `t1` at row: 7"
	if got != want {
		t.Fatalf("DumpError() =\n%q\nwant\n%q", got, want)
	}
	if err := os.WriteFile(log, []byte("mysqldump: "+strings.Repeat("é", 1000)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := f.DumpError(); len(got) > maxDumpError+3 || !utf8.ValidString(got) {
		t.Fatalf("a long error is not bounded to valid UTF-8: %d bytes", len(got))
	}
	argv := Client{Dump: "mysqldump"}.DumpArgv(f, nil)
	if argv[1] != "--defaults-extra-file=" || argv[2] != "--log-error="+log {
		t.Fatalf("argv = %q: the option file first, then the log", argv)
	}
}
