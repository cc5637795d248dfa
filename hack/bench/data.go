package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

const (
	benchDB = "bench" // the measured data
	// tinyDB is for warm-ups and the slot-to-dump latency: 20000 rows (a 2 MB
	// dump), so that its mysqldump lives long enough to be seen in /proc.
	tinyDB = "benchtiny"

	blobSize = 64 << 10 // bytes of one BLOB, random
	// sbRowDumpBytes is what one sysbench row takes in the dump (measured:
	// about 200 bytes, c and pad being 119 and 59 digits and dashes).
	sbRowDumpBytes = 200
	// blobRowDumpBytes: --hex-blob writes each byte as two hex digits.
	blobRowDumpBytes = 2*blobSize + 24
	insertBatch      = 100_000 // rows per INSERT ... SELECT
	blobBatch        = 128
)

// dataInfo is the generated data set.
type dataInfo struct {
	Tables       int
	RowsPerTable int64
	Blobs        int64
	GenTime      time.Duration
	DumpBytes    int64 // the agent's dump, from restic's summary
	StoredFull   int64 // what ours stored for it in a new repository
	Changed      int64 // rows changed by one "1%" step
}

func (d dataInfo) rows() int64 { return int64(d.Tables)*d.RowsPerTable + d.Blobs }

// planData splits the requested dump size between the sysbench tables and the BLOB table.
func planData(cfg config) dataInfo {
	d := dataInfo{Tables: cfg.Tables}
	if cfg.BlobShare > 0 {
		d.Blobs = max(cfg.Size*int64(cfg.BlobShare)/100/blobRowDumpBytes, 1)
	}
	sb := cfg.Size - d.Blobs*blobRowDumpBytes
	d.RowsPerTable = max(sb/sbRowDumpBytes/int64(cfg.Tables), 1)
	return d
}

// digitGroups is sysbench's c/pad content: n groups of 11 random digits joined by '-'.
func digitGroups(n int) string {
	g := "LPAD(FLOOR(RAND() * 100000000000), 11, '0')"
	return "CONCAT_WS('-'" + strings.Repeat(", "+g, n) + ")"
}

// randomBlob is blobSize random bytes (RANDOM_BYTES gives at most 1024 at a time).
func randomBlob() string {
	parts := make([]string, blobSize/1024)
	for i := range parts {
		parts[i] = "RANDOM_BYTES(1024)"
	}
	return "CONCAT(" + strings.Join(parts, ", ") + ")"
}

// tableSQL creates and fills one sysbench table, then adds the index on k
// (sysbench too adds it after the load).
func tableSQL(i int, rows int64) []string {
	t := fmt.Sprintf("`%s`.`sbtest%d`", benchDB, i)
	stmts := []string{fmt.Sprintf("CREATE TABLE %s (id INT NOT NULL AUTO_INCREMENT, k INT NOT NULL DEFAULT 0, "+
		"c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', PRIMARY KEY (id)) ENGINE=InnoDB", t)}
	for done := int64(0); done < rows; done += insertBatch {
		n := min(insertBatch, rows-done)
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s (k, c, pad) SELECT FLOOR(1 + RAND() * %d), %s, %s FROM seq_1_to_%d",
			t, rows, digitGroups(10), digitGroups(5), n))
	}
	return append(stmts, fmt.Sprintf("CREATE INDEX k_%d ON %s (k)", i, t))
}

func blobSQL(blobs int64) []string {
	t := fmt.Sprintf("`%s`.`blobs`", benchDB)
	stmts := []string{"CREATE TABLE " + t + " (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, data MEDIUMBLOB NOT NULL) ENGINE=InnoDB"}
	for done := int64(0); done < blobs; done += blobBatch {
		n := min(blobBatch, blobs-done)
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s (name, data) SELECT CONCAT('blob-', %d + seq), %s FROM seq_1_to_%d", t, done, randomBlob(), n))
	}
	return stmts
}

const tinySQL = "CREATE DATABASE `" + tinyDB + "`; CREATE TABLE `" + tinyDB + "`.t (id INT PRIMARY KEY, v CHAR(64)); " +
	"USE `" + tinyDB + "`; INSERT INTO t SELECT seq, SHA2(seq, 256) FROM seq_1_to_20000;"

// generate creates the data on db with two connections in parallel.
func generate(ctx context.Context, db *testenv.MariaDB, d *dataInfo) error {
	start := time.Now()
	if _, err := db.Exec(ctx, "CREATE DATABASE `"+benchDB+"` CHARACTER SET utf8mb4"); err != nil {
		return fmt.Errorf("create databases: %w", err)
	}
	jobs := [][]string{blobSQL(d.Blobs)}
	if d.Blobs == 0 {
		jobs = nil
	}
	for i := 1; i <= d.Tables; i++ {
		jobs = append(jobs, tableSQL(i, d.RowsPerTable))
	}
	work := make(chan []string)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for stmts := range work {
				for _, s := range stmts {
					// The SEQUENCE engine's seq_1_to_N needs a current database.
					if _, err := db.Exec(ctx, "USE `"+benchDB+"`; "+s+";"); err != nil {
						errs <- fmt.Errorf("generate data: %.80s...: %w", s, err)
						return
					}
				}
			}
		}()
	}
	var err error
feed:
	for _, j := range jobs {
		select {
		case work <- j:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs
	}
	if err != nil {
		return err
	}
	d.GenTime = time.Since(start)
	return verifyRows(ctx, db, *d)
}

// verifyRows checks the row counts generated.
func verifyRows(ctx context.Context, db *testenv.MariaDB, d dataInfo) error {
	q := fmt.Sprintf("SELECT (SELECT COUNT(*) FROM `%s`.`sbtest1`), (SELECT COUNT(*) FROM `%s`.`sbtest%d`)", benchDB, benchDB, d.Tables)
	if d.Blobs > 0 {
		q += fmt.Sprintf(", (SELECT COUNT(*) FROM `%s`.`blobs`)", benchDB)
	}
	out, err := db.Exec(ctx, q)
	if err != nil {
		return fmt.Errorf("count rows: %w", err)
	}
	want := fmt.Sprintf("%d\t%d", d.RowsPerTable, d.RowsPerTable)
	if d.Blobs > 0 {
		want += fmt.Sprintf("\t%d", d.Blobs)
	}
	if got := strings.TrimSpace(out); got != want {
		return fmt.Errorf("row counts on %s: got %q, want %q", db.Name, got, want)
	}
	return nil
}

// changeOnePercent rewrites 1% of the rows of every table (those with
// id % 100 = round % 100, so each round changes other rows): sysbench's
// non-index update of c, and new random bytes in the BLOBs.
func changeOnePercent(ctx context.Context, db *testenv.MariaDB, d dataInfo, round int) (int64, error) {
	var b strings.Builder
	for i := 1; i <= d.Tables; i++ {
		fmt.Fprintf(&b, "UPDATE `%s`.`sbtest%d` SET c = %s WHERE id %% 100 = %d;\n", benchDB, i, digitGroups(10), round%100)
	}
	if d.Blobs > 0 {
		fmt.Fprintf(&b, "UPDATE `%s`.`blobs` SET data = %s WHERE id %% 100 = %d;\n", benchDB, randomBlob(), round%100)
	}
	if _, err := db.Exec(ctx, b.String()); err != nil {
		return 0, fmt.Errorf("change 1%% of the rows: %w", err)
	}
	changed := int64(d.Tables) * countMod(d.RowsPerTable, round%100)
	changed += countMod(d.Blobs, round%100)
	return changed, nil
}

// countMod is how many of the ids 1..n have id % 100 == r.
func countMod(n int64, r int) int64 {
	c := n / 100
	if rr := int64(r); rr == 0 {
		return c
	} else if n%100 >= rr {
		c++
	}
	return c
}

// emptyTarget drops the benchmark's databases on the restore target.
func emptyTarget(ctx context.Context, db *testenv.MariaDB) error {
	_, err := db.Exec(ctx, "DROP DATABASE IF EXISTS `"+benchDB+"`; DROP DATABASE IF EXISTS `"+tinyDB+"`;")
	if err == nil {
		err = testenv.DropMany(ctx, db)
	}
	if err != nil {
		return fmt.Errorf("empty the restore target %s: %w", db.Name, err)
	}
	return nil
}

// quiesce flushes the server's dirty pages and the page cache, so that a
// timed run does not pay for the writes of the previous one. The server's
// settings are changed for the flush only (innodb_io_capacity would pace it
// at 200 pages a second). It waits at most two minutes.
func quiesce(ctx context.Context, db *testenv.MariaDB) error {
	out, err := db.Exec(ctx, "SELECT @@GLOBAL.innodb_max_dirty_pages_pct, @@GLOBAL.innodb_io_capacity, @@GLOBAL.innodb_io_capacity_max")
	if err != nil {
		return fmt.Errorf("quiesce %s: %w", db.Name, err)
	}
	old := strings.Fields(out)
	if len(old) != 3 {
		return fmt.Errorf("quiesce %s: unexpected settings %q", db.Name, out)
	}
	for _, v := range old {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return fmt.Errorf("quiesce %s: unexpected setting %q", db.Name, v)
		}
	}
	if _, err := db.Exec(ctx, "SET GLOBAL innodb_io_capacity_max = 100000; SET GLOBAL innodb_io_capacity = 50000; SET GLOBAL innodb_max_dirty_pages_pct = 0;"); err != nil {
		return fmt.Errorf("quiesce %s: %w", db.Name, err)
	}
	defer func() {
		restore := fmt.Sprintf("SET GLOBAL innodb_max_dirty_pages_pct = %s; SET GLOBAL innodb_io_capacity = %s; SET GLOBAL innodb_io_capacity_max = %s;", old[0], old[1], old[2])
		_, _ = db.Exec(context.WithoutCancel(ctx), restore)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, err := db.Exec(ctx, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
		if err != nil {
			return fmt.Errorf("quiesce %s: %w", db.Name, err)
		}
		if n, err := strconv.Atoi(strings.TrimSpace(out)); err == nil && n <= 16 {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	syscall.Sync()
	return nil
}
