package database

import (
	"slices"
	"testing"
)

func TestDumpedDatabases(t *testing.T) {
	for _, c := range []struct {
		args []string
		dbs  []string
		all  bool
	}{
		{[]string{"--all-databases"}, nil, true},
		{[]string{"-A", "--skip-lock-tables"}, nil, true},
		{nil, nil, true},
		{[]string{"--databases", "shop", "inventory"}, []string{"shop", "inventory"}, false},
		{[]string{"--single-transaction", "-B", "a", "--skip-triggers"}, []string{"a"}, false},
		{[]string{"shop", "orders", "lines"}, []string{"shop"}, false},
		{[]string{"-u", "root", "shop"}, []string{"shop"}, false},
		{[]string{"--where=id>1", "shop", "orders"}, []string{"shop"}, false},
	} {
		dbs, all := DumpedDatabases(c.args)
		if !slices.Equal(dbs, c.dbs) || all != c.all {
			t.Errorf("%q: %q all=%v; want %q all=%v", c.args, dbs, all, c.dbs, c.all)
		}
	}
}

// --lock-all-tables replaces --single-transaction (mysqldump refuses both).
func TestLockAllTablesReplacesSingleTransaction(t *testing.T) {
	c := Client{Dump: "mariadb-dump", MySQL: "mariadb"}
	f := &Files{OptionFile: "/x/client.cnf"}
	if argv := c.DumpArgv(f, []string{"--databases", "a"}); !slices.Contains(argv, "--single-transaction") {
		t.Errorf("default dump without --single-transaction: %v", argv)
	}
	for _, lock := range []string{"--lock-all-tables", "-x"} {
		argv := c.DumpArgv(f, []string{"--databases", "a", lock})
		if slices.Contains(argv, "--single-transaction") || !slices.Contains(argv, lock) {
			t.Errorf("%s: %v", lock, argv)
		}
	}
}

func TestWholeDatabase(t *testing.T) {
	for _, c := range []struct {
		args []string
		all  bool
		db   string
	}{
		{nil, true, ""},
		{[]string{"--all-databases"}, true, ""},
		{[]string{"--databases", "shop"}, false, "shop"},
		{[]string{"-B", "shop", "crm"}, false, ""},
		{[]string{"shop"}, false, "shop"},
		{[]string{"shop", "orders"}, false, ""},
		{[]string{"--lock-all-tables", "--databases", "shop"}, false, "shop"},
	} {
		all, db := WholeDatabase(c.args)
		if all != c.all || db != c.db {
			t.Errorf("%q: all %v db %q, want %v %q", c.args, all, db, c.all, c.db)
		}
	}
}
