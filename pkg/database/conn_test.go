package database

import (
	"errors"
	"os"
	"strings"
	"testing"
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
