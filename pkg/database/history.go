package database

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Versioned is a system-versioned table, and whether its history can be
// dumped: mariadb-dump --dump-history handles timestamp-based versioning
// only, not transaction-precise (ROW_START a transaction id).
type Versioned struct {
	Table     string // db.table
	Precise   bool   // transaction-precise: no --dump-history
	HistoryOK bool
}

// DumpsHistory reports whether the dump client has --dump-history
// (mariadb-dump 10.11 and later).
func (c Client) DumpsHistory(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.Dump, "--help").Output()
	return err == nil && strings.Contains(string(out), "--dump-history")
}

// VersionedTables lists the system-versioned tables of the databases a dump
// with args covers (all but the system schemas for --all-databases or no
// database named). Only MariaDB has them; elsewhere the list is empty.
func (c Client) VersionedTables(ctx context.Context, f *Files, env []string, dumpArgs []string) ([]Versioned, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	const q = `SELECT CONCAT(t.table_schema, '.', t.table_name), IFNULL(MAX(c.data_type), '')
FROM information_schema.tables t LEFT JOIN information_schema.columns c
  ON c.table_schema = t.table_schema AND c.table_name = t.table_name AND c.generation_expression = 'ROW START'
WHERE t.table_type = 'SYSTEM VERSIONED' GROUP BY t.table_schema, t.table_name ORDER BY 1`
	// One query on every server: MySQL has no SYSTEM VERSIONED tables,
	// so it answers with none.
	cmd := exec.CommandContext(ctx, c.MySQL, "--defaults-extra-file="+f.OptionFile, "--connect-timeout=5", "--batch", "--skip-column-names", "-e", q)
	cmd.Env = append(env, f.Env...)
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	dbs, all := DumpedDatabases(dumpArgs)
	var list []Versioned
	// Lines are "db.table<TAB>type"; the type is empty when the period
	// columns are implicit (invisible): trim only the line's end.
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		name, typ, _ := strings.Cut(line, "\t")
		if name == "" {
			continue
		}
		db, _, _ := strings.Cut(name, ".")
		if !all && !slices.Contains(dbs, db) {
			continue
		}
		precise := strings.Contains(typ, "bigint")
		list = append(list, Versioned{Table: name, Precise: precise, HistoryOK: !precise})
	}
	return list, nil
}

// DumpedDatabases reads which databases mysqldump args dump: the names
// after --databases/-B, or the first positional argument (a database and
// its tables); all is true for --all-databases/-A or no database named.
func DumpedDatabases(args []string) (dbs []string, all bool) {
	names := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--all-databases" || a == "-A":
			return nil, true
		case a == "--databases" || a == "-B":
			names = true
		case strings.HasPrefix(a, "-"):
			if !strings.Contains(a, "=") && i+1 < len(args) && takesValue(a) {
				i++
			}
		case names:
			dbs = append(dbs, a)
		case len(dbs) == 0:
			return []string{a}, false // db [tables...]
		}
	}
	return dbs, len(dbs) == 0
}

// WholeDatabase reads whether dump args dump every database (all) or
// exactly one whole database (db); neither for several databases or some
// tables of one.
func WholeDatabase(args []string) (all bool, db string) {
	dbs, all := DumpedDatabases(args)
	if all || len(dbs) != 1 {
		return all, ""
	}
	named, positional := false, 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--databases" || a == "-B":
			named = true
		case strings.HasPrefix(a, "-"):
			if !strings.Contains(a, "=") && i+1 < len(args) && takesValue(a) {
				i++
			}
		default:
			positional++
		}
	}
	if !named && positional > 1 {
		return false, "" // a database and some of its tables
	}
	return false, dbs[0]
}

// takesValue reports the few short mysqldump flags that take a separate value.
func takesValue(flag string) bool {
	switch flag {
	case "-h", "-P", "-u", "-w", "-r", "-S", "-T":
		return true
	}
	return false
}

// LocksAllTables reports whether dump args ask for --lock-all-tables: one
// global read lock for the whole dump, which makes non-transactional
// tables consistent with the rest, in place of --single-transaction.
func LocksAllTables(args []string) bool {
	return slices.Contains(args, "--lock-all-tables") || slices.Contains(args, "-x")
}

// NonTransactionalTables lists the base tables of the dumped databases
// whose engine a --single-transaction snapshot does not cover (MyISAM,
// Aria, MEMORY, ...), as "db.table (ENGINE)". The system schemas are left
// out: their tables are Aria on MariaDB, and change only with users and
// grants.
func (c Client) NonTransactionalTables(ctx context.Context, f *Files, env []string, dumpArgs []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	const q = `SELECT table_schema, table_name, engine FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND engine NOT IN ('InnoDB', 'ROCKSDB')
  AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2`
	cmd := exec.CommandContext(ctx, c.MySQL, "--defaults-extra-file="+f.OptionFile, "--connect-timeout=5", "--batch", "--skip-column-names", "-e", q)
	cmd.Env = append(env, f.Env...)
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	dbs, all := DumpedDatabases(dumpArgs)
	var list []string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 3 || !all && !slices.Contains(dbs, fields[0]) {
			continue
		}
		list = append(list, fmt.Sprintf("%s.%s (%s)", fields[0], fields[1], fields[2]))
	}
	return list, nil
}
