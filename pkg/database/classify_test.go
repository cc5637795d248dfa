package database

import (
	"errors"
	"slices"
	"testing"
)

// Each client error names its true cause: a server that never answered is
// unreachable; one that answered and then dropped the connection is not.
func TestClassifyTrueCause(t *testing.T) {
	for stderr, want := range map[string]error{
		"mysqldump: Error 2013: Lost connection to server during query when dumping table `t` at row: 0":              ErrConnectionLost,
		"ERROR 2006 (HY000) at line 12: MySQL server has gone away":                                                   ErrConnectionLost,
		"ERROR 2013 (HY000): Lost connection to server at 'reading initial communication packet', system error: 104":  ErrUnreachable,
		"ERROR 2002 (HY000): Can't connect to server on '10.0.0.9' (115)":                                             ErrUnreachable,
		"ERROR 2005 (HY000): Unknown server host 'mysql.db.svc' (-2)":                                                 ErrUnreachable,
		"mysqldump: Error 1153: Got a packet bigger than 'max_allowed_packet' bytes when dumping table `t` at row: 3": ErrPacketTooLarge,
		"ERROR 1045 (28000): Access denied for user 'app'@'10.0.0.1' (using password: YES)":                           ErrAccessDenied,
		"ERROR 2026 (HY000): TLS/SSL error: self-signed certificate in certificate chain":                             ErrTLS,
		"ERROR 1064 (42000) at line 3: You have an error in your SQL syntax":                                          nil,
	} {
		if got := Classify(stderr); !errors.Is(got, want) || (want == nil) != (got == nil) {
			t.Errorf("%s\n-> %v, want %v", stderr, got, want)
		}
	}
}

// Dump and load read and send packets up to the protocol's limit, after the
// fixed flags and before the user's (which may lower it).
func TestClientsPacketLimit(t *testing.T) {
	c := Client{Dump: "mariadb-dump", MySQL: "mariadb"}
	f := &Files{OptionFile: "/x/client.cnf"}
	for _, argv := range [][]string{c.DumpArgv(f, []string{"--databases", "shop"}), c.LoadArgv(f, []string{"--max-allowed-packet=64M"})} {
		i := slices.Index(argv, "--max-allowed-packet=1G")
		if i < 0 {
			t.Fatalf("no packet limit in %v", argv)
		}
		if j := slices.IndexFunc(argv, func(a string) bool { return a == "--databases" || a == "--max-allowed-packet=64M" }); j < i {
			t.Errorf("the user's arguments come before the packet limit: %v", argv)
		}
	}
}
