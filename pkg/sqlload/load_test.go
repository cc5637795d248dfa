package sqlload_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/sqlload"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// schema has what a parallel load could get wrong: two databases, foreign
// keys across tables, a trigger, a view over two tables, a routine, an
// event, a sequence, rows longer than a line the splitter looks at, and
// enough tables to spread over the connections.
func schema() string {
	var b strings.Builder
	b.WriteString(`SET NAMES utf8mb4;
CREATE DATABASE pa CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE pb CHARACTER SET latin1;
USE pa;
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(20));
CREATE TABLE child (id INT PRIMARY KEY, parent_id INT, CONSTRAINT fk FOREIGN KEY (parent_id) REFERENCES parent (id));
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100));
INSERT INTO parent SELECT seq, CONCAT('p', seq) FROM seq_1_to_2000;
INSERT INTO child SELECT seq, 1 + seq % 2000 FROM seq_1_to_5000;
CREATE VIEW v AS SELECT c.id, p.name FROM child c JOIN parent p ON p.id = c.parent_id;
CREATE SEQUENCE s START WITH 100;
CREATE TABLE wide (id INT PRIMARY KEY, body LONGTEXT, b LONGBLOB);
INSERT INTO wide SELECT seq, REPEAT(CONCAT('naïve 𝄞 ', seq, ' '), 2000), RANDOM_BYTES(1024) FROM seq_1_to_50;
DELIMITER //
CREATE TRIGGER trg AFTER INSERT ON child FOR EACH ROW BEGIN INSERT INTO audit (what) VALUES (CONCAT('child ', NEW.id)); END//
CREATE PROCEDURE add_parent(IN n INT) BEGIN INSERT INTO parent VALUES (n, 'x'); END//
CREATE EVENT ev ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO DELETE FROM audit WHERE id < 0//
DELIMITER ;
INSERT INTO child VALUES (9999, 1);
`)
	for i := range 12 {
		fmt.Fprintf(&b, "CREATE TABLE pb.t%02d (id INT PRIMARY KEY, k INT, c CHAR(100), KEY (k));\n", i)
		fmt.Fprintf(&b, "INSERT INTO pb.t%02d SELECT seq, seq %% 97, SHA2(seq, 256) FROM seq_1_to_%d;\n", i, 3000+1000*i)
	}
	return b.String()
}

func fingerprint(t *testing.T, db *testenv.MariaDB) string {
	t.Helper()
	ctx := context.Background()
	tables, err := db.Exec(ctx, "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema IN ('pa', 'pb') ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range strings.Fields(tables) {
		out, err := db.Exec(ctx, "CHECKSUM TABLE "+tbl+" EXTENDED")
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
	}
	for _, q := range []string{
		"SELECT routine_schema, routine_name, routine_definition FROM information_schema.routines WHERE routine_schema IN ('pa','pb') ORDER BY 1, 2",
		"SELECT trigger_schema, trigger_name, action_statement FROM information_schema.triggers WHERE trigger_schema IN ('pa','pb') ORDER BY 1, 2",
		"SELECT table_schema, table_name, view_definition FROM information_schema.views WHERE table_schema IN ('pa','pb') ORDER BY 1, 2",
		"SELECT event_schema, event_name, event_definition FROM information_schema.events WHERE event_schema IN ('pa','pb') ORDER BY 1, 2",
		"SELECT constraint_schema, table_name, constraint_name, referenced_table_name FROM information_schema.referential_constraints WHERE constraint_schema IN ('pa','pb') ORDER BY 1, 2, 3",
		"SELECT schema_name, default_character_set_name FROM information_schema.schemata WHERE schema_name IN ('pa','pb') ORDER BY 1",
		"SELECT NEXT VALUE FOR pa.s",
	} {
		out, err := db.Exec(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
	}
	return b.String()
}

type fixture struct {
	db   *testenv.MariaDB
	dump []byte
	want string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	if _, err := exec.LookPath("mariadb-install-db"); err != nil {
		t.Skip("MariaDB is not installed: run make tools")
	}
	ctx := context.Background()
	db, err := testenv.StartMariaDB(ctx, t.TempDir(), "load", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Stop)
	if _, err := db.Exec(ctx, schema()); err != nil {
		t.Fatal(err)
	}
	dumpArgv := append([]string{"mariadb-dump", "--defaults-extra-file=" + db.OptionFile()}, database.ConsistentDumpArgs()...)
	dumpArgv = append(dumpArgv, "--net-buffer-length=16384", "--databases", "pa", "pb") // several INSERTs per table
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, dumpArgv[0], dumpArgv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dump: %v: %s", err, stderr.String())
	}
	f := &fixture{db: db, dump: out.Bytes()}
	// NEXT VALUE moves the sequence: dump first, then take the fingerprint.
	f.want = fingerprint(t, db)
	f.drop(t)
	return f
}

func (f *fixture) drop(t *testing.T) {
	t.Helper()
	if _, err := f.db.Exec(context.Background(), "DROP DATABASE pa; DROP DATABASE pb;"); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) options(t *testing.T, conns int, spool int64) sqlload.Options {
	return sqlload.Options{
		Argv:        []string{"mariadb", "--defaults-extra-file=" + f.db.OptionFile(), "--binary-mode", "--default-character-set=utf8mb4"},
		Env:         os.Environ(),
		Connections: conns,
		SpoolDir:    t.TempDir(),
		SpoolLimit:  spool,
	}
}

// feed writes the dump in uneven chunks, as a pipe delivers it.
func feed(l *sqlload.Loader, dump []byte) error {
	for i, n := 0, 0; i < len(dump); i += n {
		n = min(1+(i*7919)%70000, len(dump)-i)
		if _, err := l.Write(dump[i : i+n]); err != nil {
			return err
		}
	}
	return nil
}

func TestParallelLoadRestoresEverything(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	for _, c := range []struct {
		conns int
		spool int64
		split bool
	}{{1, 1 << 30, false}, {3, 256 << 10, false}, {4, 64 << 10, false}, {3, 256 << 10, true}, {2, 64 << 10, true}} {
		t.Run(fmt.Sprintf("%d connections, %d KiB spool, split %v", c.conns, c.spool>>10, c.split), func(t *testing.T) {
			o := f.options(t, c.conns, c.spool)
			o.SplitTables, o.ChunkBytes, o.DeferIndexes = c.split, 16<<10, c.split
			l, err := sqlload.Start(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := feed(l, f.dump); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("load: %v", err)
			}
			st := l.Stats()
			if st.TableSections != 15 {
				t.Errorf("%d table sections, want the 15 tables without a foreign key", st.TableSections)
			}
			// Split: every table with a primary key and no foreign key,
			// unique or full-text key (all but child), most in several chunks.
			if c.split && (st.SplitTables != 15 || st.Chunks < 2*st.SplitTables) {
				t.Errorf("%d tables split in %d chunks, want the 15 tables without a foreign key, in at least 30", st.SplitTables, st.Chunks)
			}
			if !c.split && st.SplitTables+st.Chunks != 0 {
				t.Errorf("%d tables split without SplitTables", st.SplitTables)
			}
			// The spool may hold one write past its limit.
			if st.SpoolPeak > c.spool+70000 {
				t.Errorf("spool held %d bytes, limit %d", st.SpoolPeak, c.spool)
			}
			if got := fingerprint(t, f.db); got != f.want {
				t.Errorf("restored database differs:\n%s\nwant:\n%s", got, f.want)
			}
			f.drop(t)
		})
	}
}

// A table that cannot be loaded yet (its old copy is locked) does not hold
// up the others: they are loaded on the other connections meanwhile.
func TestSlowTableDoesNotHoldUpOthers(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	if _, err := f.db.Exec(ctx, "CREATE DATABASE pb CHARACTER SET latin1; CREATE TABLE pb.t00 (id INT);"); err != nil {
		t.Fatal(err)
	}
	// A transaction that read pb.t00 keeps the dump's DROP TABLE waiting
	// until its session ends.
	locker := exec.CommandContext(ctx, "mariadb", "--defaults-extra-file="+f.db.OptionFile(), "--batch", "--unbuffered")
	stdin, _ := locker.StdinPipe()
	stdout, _ := locker.StdoutPipe()
	if err := locker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = locker.Wait() }()
	fmt.Fprintln(stdin, "BEGIN; SELECT COUNT(*) FROM pb.t00; SELECT 'locked';")
	var seen []byte
	buf := make([]byte, 64)
	for !bytes.Contains(seen, []byte("locked")) {
		n, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("could not lock pb.t00: %q", seen)
		}
		seen = append(seen, buf[:n]...)
	}

	l, err := sqlload.Start(ctx, f.options(t, 2, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	if p := l.Position(); p.Started || p.Finished != 0 || len(p.Loading) != 0 {
		t.Fatalf("position before any write: %+v", p)
	}
	go func() {
		if err := feed(l, f.dump); err != nil {
			l.Abort(err)
			return
		}
		_ = l.Close()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := f.db.Exec(ctx, "SELECT COUNT(*) FROM pb.t11")
		if strings.TrimSpace(out) == "14000" {
			break
		}
		if time.Now().After(deadline) {
			pl, _ := f.db.Exec(ctx, "SELECT id, command, state, LEFT(info, 80) FROM information_schema.processlist")
			t.Log(pl)
			t.Fatalf("pb.t11 was not loaded while pb.t00 was locked (count %q)", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The position names the table that waits, and counts the others as
	// finished only once the server executed them.
	p := l.Position()
	if !p.Started || p.Finished < 11 || !slices.Contains(p.Loading, "`pb`.`t00`") {
		t.Errorf("position while pb.t00 waits: %+v; want it loading and t01..t11 finished", p)
	}
	_ = stdin.Close() // unlock
	if err := l.Close(); err != nil {
		t.Fatalf("load: %v", err)
	}
	if p := l.Position(); len(p.Loading) != 0 || p.Finished < 15 {
		t.Errorf("position after the load: %+v", p)
	}
	if got := fingerprint(t, f.db); got != f.want {
		t.Errorf("restored database differs:\n%s\nwant:\n%s", got, f.want)
	}
}

// A statement that fails stops the load with the server's message, and no
// client is left running.
func TestFailedStatementStopsTheLoad(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	bad := bytes.Replace(f.dump, []byte("CREATE TABLE `t07`"), []byte("CREATE TABLE `t07` oops"), 1)
	if bytes.Equal(bad, f.dump) {
		t.Fatal("no t07 in the dump")
	}
	l, err := sqlload.Start(ctx, f.options(t, 3, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	werr := feed(l, bad)
	if werr != nil {
		l.Abort(werr)
	}
	err = l.Close()
	var le *sqlload.Error
	if !errors.As(err, &le) || !strings.Contains(le.Stderr, "ERROR 1064") {
		t.Fatalf("load error %v, want the client's syntax error", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the failed load took %s to stop", d)
	}
	// The server drops a killed client's session within moments.
	for i := 0; ; i++ {
		out, _ := f.db.Exec(ctx, "SELECT COUNT(*) FROM information_schema.processlist WHERE command != 'Daemon' AND id != CONNECTION_ID() AND user = '"+f.db.User+"'")
		if strings.TrimSpace(out) == "0" {
			break
		}
		if i == 50 {
			t.Fatalf("%s sessions still connected 10s after the failed load", strings.TrimSpace(out))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// SkipTable leaves out exactly the tables it names, with their data and
// triggers, and everything else loads as usual.
func TestSkipTableLeavesOutOnlyThoseTables(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	o := f.options(t, 2, 1<<20)
	var asked []string
	o.SkipTable = func(db, table string) bool {
		asked = append(asked, db+"."+table)
		return (db == "pa" && table == "audit") || (db == "pb" && table == "t03")
	}
	l, err := sqlload.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(l, f.dump); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("load: %v", err)
	}
	if n := l.Stats().SkippedTables; n != 2 {
		t.Errorf("%d tables skipped, want 2", n)
	}
	if !slices.Contains(asked, "pb.t11") || !slices.Contains(asked, "pa.wide") {
		t.Errorf("SkipTable was asked about %v, want every table with its database", asked)
	}
	got, err := f.db.Exec(ctx, "SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables WHERE table_schema IN ('pa', 'pb') AND table_type = 'BASE TABLE' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	tables := strings.Fields(got)
	if slices.Contains(tables, "pa.audit") || slices.Contains(tables, "pb.t03") || len(tables) != 14 {
		t.Errorf("tables after the load: %v, want all 16 but pa.audit and pb.t03", tables)
	}
	if n, err := f.db.Exec(ctx, "SELECT COUNT(*) FROM pb.t04"); err != nil || strings.TrimSpace(n) != "7000" {
		t.Errorf("pb.t04 holds %q rows (%v), want 7000", n, err)
	}
}

// showCreate is SHOW CREATE TABLE of every base table of the databases.
func showCreate(t *testing.T, db *testenv.MariaDB, dbs string) string {
	t.Helper()
	ctx := context.Background()
	tables, err := db.Exec(ctx, "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables WHERE table_type IN ('BASE TABLE', 'SYSTEM VERSIONED') AND table_schema IN ("+dbs+") ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range strings.Fields(tables) {
		out, err := db.Exec(ctx, "SHOW CREATE TABLE "+tbl)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
		if strings.Contains(out, "WITH SYSTEM VERSIONING") {
			continue // its checksum holds the load's own row_start times
		}
		out, err = db.Exec(ctx, "CHECKSUM TABLE "+tbl+" EXTENDED")
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
	}
	return b.String()
}

// DeferIndexes adds plain keys after the data and leaves every table as it
// was: the same definition (keys in the same order) and the same rows,
// including the tables whose keys must stay: an AUTO_INCREMENT column
// indexed by a plain key only, system versioning, a foreign key, unique
// and full-text keys beside plain ones.
func TestDeferredIndexesLeaveTablesAsTheyWere(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	const extra = `CREATE DATABASE pc; USE pc;
CREATE TABLE pc.ai (id INT NOT NULL AUTO_INCREMENT, x INT, y VARCHAR(10), KEY (id), KEY x_y (x, y)) ENGINE=InnoDB;
INSERT INTO pc.ai (x, y) SELECT seq % 7, seq FROM seq_1_to_3000;
CREATE TABLE pc.mixed (id INT PRIMARY KEY, u INT, k INT, body TEXT, UNIQUE KEY (u), KEY k_desc (k DESC), FULLTEXT KEY ft (body), KEY kb (k, body(10))) ENGINE=InnoDB;
INSERT INTO pc.mixed SELECT seq, seq, seq % 13, CONCAT('word', seq % 50) FROM seq_1_to_3000;
CREATE TABLE pc.hist (id INT PRIMARY KEY, v INT, KEY (v)) WITH SYSTEM VERSIONING;
INSERT INTO pc.hist SELECT seq, seq FROM seq_1_to_100;
CREATE TABLE pc.aria (id INT PRIMARY KEY, v INT, KEY (v)) ENGINE=Aria;
INSERT INTO pc.aria SELECT seq, seq FROM seq_1_to_100;
`
	if _, err := f.db.Exec(ctx, extra); err != nil {
		t.Fatal(err)
	}
	want := showCreate(t, f.db, "'pc'")
	dumpArgv := append([]string{"mariadb-dump", "--defaults-extra-file=" + f.db.OptionFile()}, database.ConsistentDumpArgs()...)
	dumpArgv = append(dumpArgv, "--databases", "pc")
	var pc, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, dumpArgv[0], dumpArgv[1:]...)
	cmd.Stdout, cmd.Stderr = &pc, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dump: %v: %s", err, stderr.String())
	}
	if _, err := f.db.Exec(ctx, "DROP DATABASE pc"); err != nil {
		t.Fatal(err)
	}
	wantPB := ""
	for _, c := range []struct {
		name string
		dump []byte
		dbs  string
	}{{"pa and pb", f.dump, "'pa','pb'"}, {"pc", pc.Bytes(), "'pc'"}} {
		o := f.options(t, 2, 1<<20)
		o.DeferIndexes, o.SplitTables, o.ChunkBytes = true, true, 16<<10
		l, err := sqlload.Start(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := feed(l, c.dump); err != nil {
			t.Fatalf("%s: write: %v", c.name, err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("%s: load: %v", c.name, err)
		}
		st := l.Stats()
		switch c.name {
		case "pc":
			// ai keeps KEY(id) for its AUTO_INCREMENT and defers x_y; mixed defers two.
			if st.DeferredTables != 2 {
				t.Errorf("pc: %d tables deferred their keys, want ai and mixed", st.DeferredTables)
			}
			if got := showCreate(t, f.db, c.dbs); got != want {
				t.Errorf("pc differs after a load with deferred keys:\n%s\nwant:\n%s", got, want)
			}
		default:
			if st.DeferredTables != 12 {
				t.Errorf("%s: %d tables deferred their keys, want the 12 of pb", c.name, st.DeferredTables)
			}
			if got := fingerprint(t, f.db); got != f.want {
				t.Errorf("%s differs:\n%s\nwant:\n%s", c.name, got, f.want)
			}
			wantPB = showCreate(t, f.db, c.dbs)
			if !strings.Contains(wantPB, "KEY `k` (`k`)") {
				t.Errorf("pb's keys are missing:\n%s", wantPB)
			}
			f.drop(t)
		}
	}
}
