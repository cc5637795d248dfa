package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// phaseMany is the name of the many-objects phase for -only.
const phaseMany = "many"

const repoMany = "many-repo"

// manyStep is one size of the many-objects phase: raw and ours, both ways.
type manyStep struct {
	DBs, Tables int
	Create      time.Duration // creating the databases added by this step
	DumpBytes   int64
	RawDump     *series // mysqldump --databases ... > dump.sql
	Backup      *series // kubectl stash trigger --wait
	RawRestore  *series // mariadb < dump.sql
	Restore     *series // kubectl stash restore --wait
}

func (m manyStep) tables() int { return m.DBs * m.Tables }

// measureMany backs up and restores many small databases, at growing
// sizes, raw and ours in turns: per-table costs show as ratios that grow
// with the size.
func (b *bench) measureMany(ctx context.Context) error {
	defer b.step(fmt.Sprintf("many objects: %v databases of %d tables", b.cfg.ManyDBs, b.cfg.ManyTables))()
	start := time.Now()
	b.res.ManyStarted = start
	defer func() { b.res.ManyElapsed = time.Since(start) }()
	if err := b.freshRepo(ctx, b.localRepo(repoMany)); err != nil {
		return err
	}
	if _, _, err := b.kubectl(ctx, kubeTO, "stash", "-n", ns, "create", "repository", repoMany, "--backend", "local",
		"--path", b.localRepo(repoMany).Dir, "--secret", "repo-creds"); err != nil {
		return err
	}
	created := 0
	for _, dbs := range b.cfg.ManyDBs {
		many := testenv.ManyDatabases{DBs: dbs, Tables: b.cfg.ManyTables}
		step := manyStep{DBs: dbs, Tables: many.Tables,
			RawDump: &series{Key: "many-raw-dump"}, Backup: &series{Key: "many-backup"},
			RawRestore: &series{Key: "many-raw-restore"}, Restore: &series{Key: "many-restore"}}
		t0 := time.Now()
		if _, err := b.src.Exec(ctx, many.CreateSQL(created)); err != nil {
			return fmt.Errorf("create %d databases of %d tables: %w", dbs-created, many.Tables, err)
		}
		step.Create, created = time.Since(t0), dbs
		b.logf("   %d tables: created %d databases in %s", step.tables(), dbs, step.Create.Round(time.Millisecond))
		want, err := b.src.Exec(ctx, many.ChecksumSQL())
		if err != nil {
			return err
		}
		if n := strings.Count(want, "\n"); n != many.ChecksumLines() {
			return fmt.Errorf("the source answers %d checksum lines, want %d", n, many.ChecksumLines())
		}
		config := fmt.Sprintf("many-%d", dbs)
		if _, _, err := b.kubectl(ctx, kubeTO, "stash", "-n", ns, "create", "backupconfig", config, "--target", "appbinding/"+abSrc,
			"--repository", repoMany, "--param", "args=--databases "+strings.Join(many.Names(), " ")); err != nil {
			return err
		}
		if err := quiesce(ctx, b.src); err != nil {
			return err
		}
		path := filepath.Join(b.work, "many.sql")
		var snapshot string
		for i := range b.cfg.ManyRuns {
			d, size, err := b.dumpToFile(ctx, b.dumpArgv(append([]string{"--databases"}, many.Names()...)...), path)
			if err != nil {
				return err
			}
			step.RawDump.add(d)
			step.DumpBytes = size
			syscall.Sync()
			r, err := b.trigger(ctx, config)
			if err != nil {
				return err
			}
			step.Backup.add(r.d)
			snapshot = r.snapshot
			b.logf("   %d tables, run %d: mysqldump > file %s (%s), ours %s", step.tables(), i+1, d.Round(time.Millisecond), humanBytes(size), r.d.Round(time.Millisecond))
		}
		for i := range b.cfg.ManyRuns {
			raw, err := b.rawRestore(ctx, path)
			if err != nil {
				return err
			}
			step.RawRestore.add(raw)
			if err := b.prepareTarget(ctx); err != nil {
				return err
			}
			_, ours, err := b.kubectl(ctx, sessionTO+time.Minute, "stash", "-n", ns, "restore", "--repository", repoMany,
				"--target", "appbinding/"+abDst, "--snapshot", snapshot, "--wait", "--timeout", sessionTOs)
			if err != nil {
				return fmt.Errorf("kubectl stash restore of %d tables: %w (agent log %s)", step.tables(), err, b.agents[abDst].LogPath)
			}
			step.Restore.add(ours)
			// Complete: every table's checksum, every view and trigger.
			got, err := b.dst.Exec(ctx, many.ChecksumSQL())
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("after kubectl stash restore of %d tables, the target differs from the source (%d of %d checksum lines)",
					step.tables(), strings.Count(got, "\n"), strings.Count(want, "\n"))
			}
			b.logf("   %d tables, run %d: mariadb < file %s, ours %s (checked)", step.tables(), i+1, raw.Round(time.Millisecond), ours.Round(time.Millisecond))
		}
		_ = os.Remove(path)
		b.res.Many = append(b.res.Many, step)
	}
	return nil
}

// dumpToFile times argv writing its dump to path and returns the file's size.
func (b *bench) dumpToFile(ctx context.Context, argv []string, path string) (time.Duration, int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	d, err := b.timeDumpTo(ctx, argv, f)
	if err != nil {
		return 0, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return d, st.Size(), nil
}

// Markers of the many-objects section: -only many rewrites what is between them.
const (
	manyBegin = "<!-- section:many:begin: written by make bench; `make bench BENCH_ARGS=-only=many` rewrites this section alone -->"
	manyEnd   = "<!-- section:many:end -->"
)

// manySection renders the many-objects section, markers included.
func manySection(cfg config, r *results) string {
	var w strings.Builder
	md := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	md("%s", manyBegin)
	md("## Many objects")
	md("")
	md("Mode **%s**, each figure the median of %d run(s), measured on %s in %s, kubectl-stash commit %s. "+
		"Each database holds %d tables `(id INT PRIMARY KEY, v VARCHAR(40), n INT)` of 3 rows, a view and a trigger (`testenv.ManyDatabases`, the data of the e2e test `TestTenThousandTables`). "+
		"The backups name the databases (`--databases many_000 ...`, the agent's flags); raw and ours take turns. "+
		"Each restore goes into a target whose `many_` databases were dropped and which was quiesced; after each of ours, every table's `CHECKSUM TABLE`, and the count of tables, views and triggers, are compared with the source's.",
		cfg.Mode, cfg.ManyRuns, r.ManyStarted.UTC().Format("2006-01-02 15:04 MST"), r.ManyElapsed.Round(time.Second), r.Versions.Commit,
		cfg.ManyTables)
	md("")
	md("| tables | databases | dump | `mysqldump > dump.sql` | ours: backup | ours / raw | `mariadb < dump.sql` | ours: restore | ours / raw | ours per table: backup, restore |")
	md("|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range r.Many {
		n := float64(s.tables())
		md("| %d | %d | %s | %s | %s | %.2fx | %s | %s | %.2fx | %.1f ms, %.1f ms |", s.tables(), s.DBs, humanBytes(s.DumpBytes),
			secs(s.RawDump.median()), secs(s.Backup.median()), ratio(s.Backup.median(), s.RawDump.median()),
			secs(s.RawRestore.median()), secs(s.Restore.median()), ratio(s.Restore.median(), s.RawRestore.median()),
			float64(s.Backup.median().Milliseconds())/n, float64(s.Restore.median().Milliseconds())/n)
	}
	if len(r.Many) >= 2 {
		a, z := r.Many[0], r.Many[len(r.Many)-1]
		grow := func(f func(manyStep) *series) float64 { return ratio(f(z).median(), f(a).median()) }
		md("")
		md("From %d to %d tables (%.0fx the tables), the time grew: raw mysqldump %.1fx, ours backup %.1fx, raw restore %.1fx, ours restore %.1fx. "+
			"A per-table cost that blew up would show as growth well above the tables' factor.",
			a.tables(), z.tables(), float64(z.tables())/float64(a.tables()),
			grow(func(s manyStep) *series { return s.RawDump }), grow(func(s manyStep) *series { return s.Backup }),
			grow(func(s manyStep) *series { return s.RawRestore }), grow(func(s manyStep) *series { return s.Restore }))
	}
	md("%s", manyEnd)
	return w.String()
}

// replaceSection puts section (markers included) in place of the text
// between begin and end in doc; where doc has no such section, before the
// hand-written notes, or at the end.
func replaceSection(doc, section, begin, end string) string {
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i >= 0 && j > i {
		return doc[:i] + strings.TrimSuffix(section, "\n") + doc[j+len(end):]
	}
	if k := strings.Index(doc, notesBegin); k >= 0 {
		return doc[:k] + section + "\n" + doc[k:]
	}
	if doc != "" && !strings.HasSuffix(doc, "\n") {
		doc += "\n"
	}
	return doc + "\n" + section
}

// writeManySection rewrites the many-objects section of cfg.Out alone.
func writeManySection(cfg config, r *results) error {
	return writeSection(cfg.Out, manySection(cfg, r), manyBegin, manyEnd)
}

// writePITRSection rewrites the point-in-time section of cfg.Out alone.
func writePITRSection(cfg config, r *results) error {
	return writeSection(cfg.Out, pitrSection(cfg, r), pitrBegin, pitrEnd)
}

// writeSection puts section in place of its old text in the report at path.
func writeSection(path, section, begin, end string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(replaceSection(string(old), section, begin, end)), 0o644)
}
