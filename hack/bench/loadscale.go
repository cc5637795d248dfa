package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/sqlload"
)

// phaseRestore is the name of the restore-speed phase for -only.
const phaseRestore = "restore"

// oneDB holds the single-table data set: one table with two secondary keys.
const oneDB = "benchone"

// loadSetting is one way the agent's loader (pkg/sqlload) may run.
type loadSetting struct {
	Key          string
	Conns        int
	Defer, Split bool
	Default      bool // what the agent runs on this target
}

func (s loadSetting) label() string {
	keys, tables := "keys in place", "each table on one connection"
	if s.Defer {
		keys = "keys after the data"
	}
	if s.Split {
		tables = "large tables split"
	}
	conns := fmt.Sprintf("%d connections", s.Conns)
	if s.Conns == 1 {
		conns = "1 connection"
	}
	l := fmt.Sprintf("%s, %s, %s", conns, keys, tables)
	if s.Default {
		l = "ours (the agent's default here): " + l
	}
	return l
}

// loadSet is one data set of the restore-speed phase.
type loadSet struct {
	Name      string
	DumpBytes int64
	Raw       *series
	Settings  []*series
	Stats     []sqlload.Stats // of each setting's first run
}

// loadScale is the restore-speed phase's result.
type loadScale struct {
	Started  time.Time
	Elapsed  time.Duration
	Runs     int
	CPUs     int // the target server's; 0: it did not say
	Conns    int // the agent's default for it
	Sets     []*loadSet
	OneRows  int64
	Verified string
}

// loadSettings are the settings measured: the agent's default, 1 to 4
// connections, and each technique turned off in turn.
func loadSettings(def int) []loadSetting {
	s := []loadSetting{{Key: "default", Conns: def, Defer: true, Split: true, Default: true}}
	for _, n := range []int{1, 2, 4} {
		if n != def {
			s = append(s, loadSetting{Key: fmt.Sprintf("c%d", n), Conns: n, Defer: true, Split: n > 1})
		}
	}
	return append(s,
		loadSetting{Key: "whole", Conns: def, Defer: true},
		loadSetting{Key: "neither", Conns: def})
}

// measureLoad times the agent's loader against `mariadb < dump.sql` on two
// data sets, in turns, each run into a target emptied and quiesced: the
// bench database, and one table of the same size with two secondary keys.
// The first run of each setting is checked against the source's checksums
// and table definitions.
func (b *bench) measureLoad(ctx context.Context) error {
	defer b.step("restore speed: the agent's loader by setting, against mariadb < dump.sql")()
	res := &loadScale{Started: time.Now(), Runs: b.cfg.LoadRuns}
	b.res.Load = res
	defer func() { res.Elapsed = time.Since(res.Started) }()
	files := &database.Files{OptionFile: b.dst.OptionFile()}
	if n, ok := b.db.ServerCPUs(ctx, files, b.environ()); ok {
		res.CPUs = n
	}
	res.Conns = sqlload.AutoConnections(res.CPUs)

	one := b.cfg.Size / oneRowDumpBytes
	res.OneRows = one
	t0 := time.Now()
	if err := generateOne(ctx, b.src, one); err != nil {
		return err
	}
	b.logf("   %s.big: %d rows generated in %s", oneDB, one, time.Since(t0).Round(time.Second))
	for _, set := range []struct{ name, db string }{
		{fmt.Sprintf("`%s`: %d tables and BLOBs", benchDB, b.res.Data.Tables), benchDB},
		{fmt.Sprintf("`%s`: one table of %d rows, two secondary keys", oneDB, one), oneDB},
	} {
		if err := b.measureLoadSet(ctx, res, set.name, set.db); err != nil {
			return err
		}
	}
	// The later phases back up the source whole: leave it as it was.
	_, err := b.src.Exec(ctx, "DROP DATABASE `"+oneDB+"`")
	return err
}

func (b *bench) measureLoadSet(ctx context.Context, res *loadScale, name, db string) error {
	path := filepath.Join(b.work, db+".sql")
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	_, err = b.timeDumpTo(ctx, b.dumpArgv("--databases", db), out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("dump %s: %w", db, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	want, err := tableState(ctx, b.src, db)
	if err != nil {
		return err
	}
	set := &loadSet{Name: name, DumpBytes: st.Size(), Raw: &series{Key: "load-raw", Label: "`mariadb < dump.sql` (the agent's client flags)", Bytes: st.Size()}}
	res.Sets = append(res.Sets, set)
	settings := loadSettings(res.Conns)
	for _, s := range settings {
		set.Settings = append(set.Settings, &series{Key: "load-" + s.Key, Label: s.label(), Bytes: st.Size()})
	}
	set.Stats = make([]sqlload.Stats, len(settings))
	empty := func() error {
		if _, err := b.dst.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			return err
		}
		return quiesce(ctx, b.dst)
	}
	for run := range res.Runs {
		// Raw first, then each setting, starting one further each run.
		order := []int{-1}
		for i := range settings {
			order = append(order, (i+run)%len(settings))
		}
		if run%2 == 1 {
			order = append(order[1:], -1)
		}
		for _, i := range order {
			if err := empty(); err != nil {
				return err
			}
			if i < 0 {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				argv := b.loadArgv()
				_, d, err := b.run(ctx, sessionTO, f, nil, argv[0], argv[1:]...)
				f.Close()
				if err != nil {
					return err
				}
				set.Raw.add(d)
				b.logf("   %s, raw: %s", db, d.Round(time.Millisecond))
				continue
			}
			d, st, err := b.loadWith(ctx, path, settings[i])
			if err != nil {
				return fmt.Errorf("%s, %s: %w", db, settings[i].label(), err)
			}
			set.Settings[i].add(d)
			b.logf("   %s, %s: %s (%d tables split in %d chunks, %d deferred their keys)", db, settings[i].label(), d.Round(time.Millisecond),
				st.SplitTables, st.Chunks, st.DeferredTables)
			if run == 0 {
				set.Stats[i] = st
				got, err := tableState(ctx, b.dst, db)
				if err != nil {
					return err
				}
				if got != want {
					return fmt.Errorf("%s after a load with %s differs from the source:\n%s\nwant:\n%s", db, settings[i].label(), got, want)
				}
			}
		}
	}
	res.Verified = "The first run of each setting left every table with the source's `CHECKSUM TABLE` and `SHOW CREATE TABLE`"
	return empty()
}

// loadWith feeds the dump file to the agent's loader with setting s.
func (b *bench) loadWith(ctx context.Context, path string, s loadSetting) (time.Duration, sqlload.Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, sqlload.Stats{}, err
	}
	defer f.Close()
	spool := filepath.Join(b.work, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return 0, sqlload.Stats{}, err
	}
	start := time.Now()
	l, err := sqlload.Start(ctx, sqlload.Options{
		Argv: b.loadArgv(), Env: b.environ(), Connections: s.Conns,
		DeferIndexes: s.Defer, SplitTables: s.Split,
		SpoolDir: spool, SpoolLimit: agentSpool,
	})
	if err != nil {
		return 0, sqlload.Stats{}, err
	}
	if _, err := io.CopyBuffer(l, f, make([]byte, 1<<20)); err != nil {
		l.Abort(err)
		return 0, sqlload.Stats{}, err
	}
	if err := l.Close(); err != nil {
		return 0, sqlload.Stats{}, err
	}
	return time.Since(start), l.Stats(), nil
}

// agentSpool is the agent's --restore-spool default: how far the stream may
// run ahead of the connections, which bounds how many tables load at once.
const agentSpool = 1 << 30

// oneRowDumpBytes is what a row of the single table takes in the dump.
const oneRowDumpBytes = 212

// generateOne creates benchone.big, rows of sysbench's shape with a
// second key, and adds both keys after the rows.
func generateOne(ctx context.Context, db interface {
	Exec(context.Context, string, ...string) (string, error)
}, rows int64) error {
	t := "`" + oneDB + "`.`big`"
	stmts := []string{"DROP DATABASE IF EXISTS `" + oneDB + "`", "CREATE DATABASE `" + oneDB + "` CHARACTER SET utf8mb4", "USE `" + oneDB + "`", // the SEQUENCE engine needs a database
		"CREATE TABLE " + t + " (id INT NOT NULL AUTO_INCREMENT, k INT NOT NULL DEFAULT 0, k2 INT NOT NULL DEFAULT 0, " +
			"c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', PRIMARY KEY (id)) ENGINE=InnoDB"}
	for done := int64(0); done < rows; done += insertBatch {
		n := min(insertBatch, rows-done)
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s (k, k2, c, pad) SELECT FLOOR(1 + RAND() * %d), FLOOR(1 + RAND() * %d), %s, %s FROM seq_1_to_%d",
			t, rows, rows, digitGroups(10), digitGroups(5), n))
	}
	stmts = append(stmts, "ALTER TABLE "+t+" ADD KEY k (k), ADD KEY k2 (k2)")
	if _, err := db.Exec(ctx, strings.Join(stmts, ";\n")+";"); err != nil {
		return fmt.Errorf("generate %s: %w", t, err)
	}
	return nil
}

// tableState is every table's checksum and definition in database name.
func tableState(ctx context.Context, db interface {
	Exec(context.Context, string, ...string) (string, error)
}, name string) (string, error) {
	tables, err := db.Exec(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = '"+name+"' AND table_type = 'BASE TABLE' ORDER BY 1")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, t := range strings.Fields(tables) {
		q := "`" + name + "`.`" + t + "`"
		out, err := db.Exec(ctx, "CHECKSUM TABLE "+q+"; SHOW CREATE TABLE "+q)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	return b.String(), nil
}

// Markers of the restore-speed section: -only restore rewrites what is between them.
const (
	loadBegin = "<!-- section:restore:begin: written by make bench; `make bench BENCH_ARGS=-only=restore` rewrites this section alone -->"
	loadEnd   = "<!-- section:restore:end -->"
)

// Goals of issue 18, against the raw single-stream restore of the same dump.
const (
	targetLoadRatio  = 0.6
	targetTableRatio = 0.8
)

// loadSection renders the restore-speed section, markers included.
func loadSection(cfg config, r *results) string {
	l := r.Load
	var w strings.Builder
	md := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	md("%s", loadBegin)
	md("## Restore speed")
	md("")
	md("Mode **%s**, each figure the median of %d run(s), measured on %s in %s, kubectl-stash commit %s. "+
		"Each data set is dumped once (`mysqldump --databases` with the agent's flags) to a file; the file is then loaded by `mariadb < dump.sql` "+
		"and by the agent's loader (`pkg/sqlload`, what `kubectl stash restore` feeds from `restic dump`) with each setting, in turns, "+
		"into a target from which the database was dropped and which was quiesced. The target server reports %d CPUs, so the agent's default is %d connections. %s.",
		cfg.Mode, l.Runs, l.Started.UTC().Format("2006-01-02 15:04 MST"), l.Elapsed.Round(time.Second), r.Versions.Commit, l.CPUs, l.Conns, l.Verified)
	md("")
	for i, set := range l.Sets {
		raw := set.Raw.median()
		md("### %s (%s of dump)", set.Name, humanBytes(set.DumpBytes))
		md("")
		md("| | time | MiB/s | / raw | tables split (chunks), keys deferred |")
		md("|---|---|---|---|---|")
		md("| %s | %s | %.0f | 1.00x | |", set.Raw.Label, secs(raw), mibPerSec(set.Raw.Bytes, raw))
		for j, s := range set.Settings {
			st := set.Stats[j]
			md("| %s | %s | %.0f | %.2fx | %d (%d), %d |", s.Label, secs(s.median()), mibPerSec(s.Bytes, s.median()), ratio(s.median(), raw),
				st.SplitTables, st.Chunks, st.DeferredTables)
		}
		md("")
		goal, what := targetLoadRatio, "the bench data set"
		if i == 1 {
			goal, what = targetTableRatio, "one table with two secondary keys"
		}
		if len(set.Settings) > 0 {
			got := ratio(set.Settings[0].median(), raw)
			md("Goal for %s: ≤ %.1fx the raw restore; measured %.2fx: %s.", what, goal, got, passMiss(got > 0 && got <= goal))
			md("")
		}
	}
	md("%s", loadEnd)
	return w.String()
}

// writeLoadSection rewrites the restore-speed section of cfg.Out alone.
func writeLoadSection(cfg config, r *results) error {
	return writeSection(cfg.Out, loadSection(cfg, r), loadBegin, loadEnd)
}
