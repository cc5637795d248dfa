package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/database"
)

// Targets from the issue: reported, not enforced.
const (
	targetBackupRatio  = 1.05
	targetRestoreRatio = 1.05
	targetBackupRSSMiB = 64
	targetIdleRSSMiB   = 30
	targetSlotToDump   = time.Second
)

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "**MISS**"
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// The report's hand-written part: kept from the previous report, between these markers.
const (
	notesBegin = "<!-- notes:begin: written by hand, kept by make bench -->"
	notesEnd   = "<!-- notes:end -->"
)

// The scale section is written by `make bench-scale` (test/scale), which
// this bench does not run: kept as it is, markers included.
const (
	scaleBegin = "<!-- section:scale:begin: written by make bench-scale -->"
	scaleEnd   = "<!-- section:scale:end -->"
)

// keptNotes returns the hand-written block of an existing report, markers included.
func keptNotes(path string) string { return keptBlock(path, notesBegin, notesEnd) }

// keptBlock returns the block between begin and end of an existing
// report, markers included; "" when it has none.
func keptBlock(path, begin, end string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return ""
	}
	return s[i : j+len(end)]
}

// writeReport renders the markdown report and its charts.
func writeReport(cfg config, r *results) error {
	if err := os.MkdirAll(filepath.Dir(cfg.Out), 0o755); err != nil {
		return err
	}
	kept := keptNotes(cfg.Out)
	scale := keptBlock(cfg.Out, scaleBegin, scaleEnd)
	charts, err := writeCharts(r, cfg.ChartDir, filepath.Dir(cfg.Out))
	if err != nil {
		return err
	}
	var w strings.Builder
	md := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	get := func(key string) *series {
		if s := r.find(key); s != nil {
			return s
		}
		return &series{}
	}
	stash, local, s3 := get("stash"), get("ours-local"), get("ours-s3")
	rawRestore, oursRestore := get("raw-restore"), get("ours-restore")

	md("# Benchmarks")
	md("")
	md("Written by `make bench` (`hack/bench`); do not edit by hand. Mode **%s**: each figure is the median of %d run(s) "+
		"(tuning settings: %d), measured on %s in %s.", cfg.Mode, cfg.Runs, cfg.TuneRuns, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Elapsed.Round(time.Second))
	if cfg.Mode != "full" {
		md("")
		md("> Small mode proves that the benchmark works; its figures are too small and too few to act on.")
	}
	md("")
	md("## Against the targets")
	md("")
	md("| target | measured | | result |")
	md("|---|---|---|---|")
	br := ratio(local.median(), stash.median())
	md("| backup end to end ≤ %.2fx Stash's pipeline | ours %s, Stash's pipeline %s | %.2fx | %s |", targetBackupRatio, secs(local.median()), secs(stash.median()), br, passMiss(br > 0 && br <= targetBackupRatio))
	rr := ratio(oursRestore.median(), rawRestore.median())
	md("| restore end to end ≤ %.2fx `mariadb < dump.sql` | ours %s, raw %s | %.2fx | %s |", targetRestoreRatio, secs(oursRestore.median()), secs(rawRestore.median()), rr, passMiss(rr > 0 && rr <= targetRestoreRatio))
	md("| agent RSS during a backup < %d MiB | peak since start (VmHWM) %s; largest sample %s; backup of %s | | %s |", targetBackupRSSMiB,
		mib(r.AgentBackupHWM), mib(r.AgentBackupRSS), humanBytes(r.Data.DumpBytes), passMiss(r.AgentBackupHWM > 0 && r.AgentBackupHWM < targetBackupRSSMiB<<10))
	md("| agent RSS idle < %d MiB | largest sample %s, mean %s | | %s |", targetIdleRSSMiB, mib(r.IdleRSS), mib(r.IdleRSSMean), passMiss(r.IdleRSS > 0 && r.IdleRSS < targetIdleRSSMiB<<10))
	slot := medianDur(r.SlotToDump)
	if len(r.SlotToDump) > 0 {
		md("| slot to mysqldump < %s | median %s of %d slots (%s) | | %s |", targetSlotToDump, secs(slot), len(r.SlotToDump), joinDur(r.SlotToDump), passMiss(slot < targetSlotToDump))
	} else {
		md("| slot to mysqldump < %s | not measured: no scheduled mysqldump was seen in /proc | | %s |", targetSlotToDump, passMiss(false))
	}
	md("")

	md("## Machine and versions")
	md("")
	md("| | |")
	md("|---|---|")
	md("| CPU | %s, %d cores |", r.Machine.CPU, r.Machine.Cores)
	md("| memory | %.1f GiB |", r.Machine.MemGiB)
	md("| kernel | Linux %s (%s) |", r.Machine.Kernel, r.Machine.OS)
	md("| Go | %s |", r.Versions.Go)
	md("| restic | %s |", r.Versions.Restic)
	md("| MariaDB | %s |", r.Versions.MariaDB)
	md("| kube-apiserver | %s |", r.Versions.APIServer)
	md("| kubectl | %s |", r.Versions.Kubectl)
	md("| kubectl-stash | commit %s |", r.Versions.Commit)
	md("")
	md("MariaDB runs as `test/testenv` starts it (128 MiB buffer pool, 64 MiB redo log, `innodb_flush_log_at_trx_commit=2`); " +
		"the repositories, the S3 server (versitygw, posix backend) and MariaDB share one disk.")
	md("")

	d := r.Data
	md("## Data")
	md("")
	md("- database `%s`: %d sysbench-shaped tables (`sbtest1`..`sbtest%d`: `id` INT AUTO_INCREMENT primary key, `k` INT with an index, `c` CHAR(120), `pad` CHAR(60), random digit groups as sysbench writes them) of %d rows each, and a table of %d BLOBs of %s of random bytes: %d rows in all;",
		benchDB, d.Tables, d.Tables, d.RowsPerTable, d.Blobs, humanBytes(blobSize), d.rows())
	md("- the dump (`mysqldump --all-databases` with the agent's flags, including `--hex-blob`) is **%s**; generated in %s with MariaDB's SEQUENCE engine;", humanBytes(d.DumpBytes), d.GenTime.Round(time.Second))
	md("- \"1%% changed\": %d rows rewritten per step (1%% of every table: new `c` values, new BLOB bytes), a different 1%% each run.", d.Changed)
	md("")

	md("## Figures")
	md("")
	md("| | what | median | min | max | MiB/s | note |")
	md("|---|---|---|---|---|---|---|")
	letter := map[string]string{"dump": "a", "dump-agent": "a", "stash": "b", "ours-local": "c", "ours-s3": "c", "ours-unchanged": "d", "ours-changed": "e", "raw-restore": "f", "ours-restore": "g", "dump-tee": "a", "ours-verify": "h", "ours-verify-restore": "h"}
	notes := map[string]string{
		"dump-agent":     "`" + strings.Join(database.ConsistentDumpArgs(), " ") + "`",
		"ours-unchanged": "stored " + bytesList(r.AddedUnchanged),
		"ours-changed": "stored " + bytesList(r.AddedChanged) + fmt.Sprintf(" (%.0f%% of the %s the first backup stored)",
			pct(medianInt(r.AddedChanged), d.StoredFull), humanBytes(d.StoredFull)),
	}
	for _, s := range slices.Concat(r.Backup, r.Restore) {
		md("| %s | %s | %s | %s | %s | %.0f | %s |", letter[s.Key], s.Label, secs(s.median()), secs(s.min()), secs(s.max()), mibPerSec(s.Bytes, s.median()), notes[s.Key])
	}
	md("")
	md("| other | value |")
	md("|---|---|")
	md("| peak RSS of the agent during the backups | VmHWM %s, largest 25 ms sample %s |", mib(r.AgentBackupHWM), mib(r.AgentBackupRSS))
	md("| peak RSS of the agent's restic | %s |", mib(r.ResticAgentPeak))
	md("| peak RSS of restic in Stash's pipeline | %s |", mib(r.ResticStashPeak))
	md("| peak RSS of the target's agent during the restores | %s |", mib(r.AgentRestoreRSS))
	md("| idle agent (after %s) | RSS %s max, %s mean; CPU %.2f%% of one core over %s |", cfg.IdleSettle, mib(r.IdleRSS), mib(r.IdleRSSMean), r.IdleCPU, r.IdleWindow.Round(time.Second))
	md("| scheduled slot to mysqldump start | median %s over %d slots (`@every %s`) |", secs(slot), len(r.SlotToDump), cfg.SlotEvery)
	if s := r.StatusLatency; s != nil {
		md("| %s | median %s (min %s, max %s) |", s.Label, secs(s.median()), secs(s.min()), secs(s.max()))
	}
	if s := r.PluginStartup; s != nil {
		md("| %s | median %s |", s.Label, secs(s.median()))
	}
	md("")

	md("## Ratios")
	md("")
	md("| ratio | value |")
	md("|---|---|")
	for _, q := range []struct {
		name string
		a, b *series
	}{
		{"ours (local) / Stash's pipeline", local, stash},
		{"ours (S3) / Stash's pipeline (local)", s3, stash},
		{"ours (local) / raw mysqldump with the agent's flags", local, get("dump-agent")},
		{"ours (local) / raw `mysqldump --single-transaction --all-databases`", local, get("dump")},
		{"Stash's pipeline / raw mysqldump with the agent's flags", stash, get("dump-agent")},
		{"ours, nothing changed / ours, new repository", get("ours-unchanged"), local},
		{"ours, 1% changed / ours, new repository", get("ours-changed"), local},
		{"ours restore / raw restore", oursRestore, rawRestore},
		{"the manifest: mysqldump through dump-tee / mysqldump, agent's flags, to /dev/null", get("dump-tee"), get("dump-agent")},
		{"verification, whole / ours restore", get("ours-verify"), oursRestore},
		{"verification's restore (scratch server) / ours restore", get("ours-verify-restore"), oursRestore},
	} {
		md("| %s | %.2fx |", q.name, ratio(q.a.median(), q.b.median()))
	}
	md("")
	if len(r.StartLatency) > 0 {
		md("Where the time of ours goes (backups c to e, medians): from `kubectl stash trigger` to the start of mysqldump **%s**; "+
			"from the end of mysqldump to `kubectl` exiting **%s** (retention, the session's status, events and metrics, and `--wait` noticing the end).",
			secs(medianDur(r.StartLatency)), secs(medianDur(r.FinishLatency)))
		md("")
	}

	md("## Tuning")
	md("")
	md("restic alone, `restic backup --stdin-from-command -- mysqldump ...` into a new local repository, on the same data.")
	md("")
	md("| setting | time | MiB/s | repository size |")
	md("|---|---|---|---|")
	packs := r.PackSize
	if len(packs) > 0 {
		packs = packs[1:] // the default is the compression auto row
	}
	for _, t := range slices.Concat(r.Compression, packs) {
		md("| `%s` | %s | %.0f | %s |", t.Setting, secs(t.Time.median()), mibPerSec(t.Time.Bytes, t.Time.median()), humanBytes(t.Size))
	}
	md("")
	md("The restore stream: `restic dump` of the latest snapshot piped into mysql (the agent's flags) through each buffer, into an empty target. " +
		"These are single-stream restores, one connection as in `mariadb < dump.sql`; the agent (g) loads tables over two connections through a spool instead. A `bufio.Writer` makes restic wait while it flushes; a read-ahead ring decouples the two: restic fills free chunks while a goroutine feeds mysql.")
	md("")
	md("| buffer | time | MiB/s | |")
	md("|---|---|---|---|")
	for _, s := range r.ReadAhead {
		md("| %s | %s | %.0f | %s |", s.Label, secs(s.median()), mibPerSec(s.Bytes, s.median()), s.Note)
	}
	md("")
	md("### Recommendation")
	md("")
	for _, line := range recommend(cfg, r) {
		md("- %s", line)
	}
	md("")

	if r.Load != nil {
		md("%s", loadSection(cfg, r))
	}
	if len(r.Many) > 0 {
		md("%s", manySection(cfg, r))
	}
	if r.PITR != nil {
		md("%s", pitrSection(cfg, r))
	}

	if scale != "" {
		md("%s", scale)
		md("")
	}
	if kept != "" {
		md("%s", kept)
		md("")
	}

	md("## Charts")
	md("")
	for _, name := range []string{"backup.png", "restore.png", "tuning.png"} {
		if p, ok := charts[name]; ok {
			md("![%s](%s)", strings.TrimSuffix(name, ".png"), p)
			md("")
		}
	}

	md("## Method")
	md("")
	for _, line := range methodNotes(cfg) {
		md("- %s", line)
	}
	return os.WriteFile(cfg.Out, []byte(w.String()), 0o644)
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func bytesList(vs []int64) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, humanBytes(v))
	}
	return strings.Join(parts, ", ")
}

func joinDur(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2f", d.Seconds()))
	}
	return strings.Join(parts, ", ") + " s"
}

// recommend turns the tuning figures into advice. Differences under the
// noise margin are called a tie.
func recommend(cfg config, r *results) []string {
	const noise = 0.03
	var out []string
	if cfg.Mode != "full" || cfg.TuneRuns < 3 {
		out = append(out, fmt.Sprintf("These are %s-mode figures with %d run(s) per setting: treat them as a smoke test, not as advice.", cfg.Mode, cfg.TuneRuns))
	}
	if len(r.Compression) == 3 {
		off, auto, mx := r.Compression[0], r.Compression[1], r.Compression[2]
		fast := slices.MinFunc(r.Compression, func(a, b tuneResult) int { return cmpDur(a.Time.median(), b.Time.median()) })
		out = append(out, fmt.Sprintf("Compression: `off` %s and %s, `auto` %s and %s, `max` %s and %s; fastest `%s`.",
			secs(off.Time.median()), humanBytes(off.Size), secs(auto.Time.median()), humanBytes(auto.Size), secs(mx.Time.median()), humanBytes(mx.Size), fast.Setting))
		switch {
		case fast.Setting == auto.Setting:
			out = append(out, "Keep restic's default `--compression auto`: it is the fastest here and keeps the repository small.")
		default:
			out = append(out, fmt.Sprintf("Keep restic's default `--compression auto`. `off` takes %.0f%% of its time for a repository %.1fx its size; `max` takes %.1fx its time to save %.0f%%. "+
				"Repository size is paid for every day, the backup time once. The agent passes no `--compression`, so it gets `auto`; `off` is the one worth offering, as a task param, to CPU-starved databases.",
				100*ratio(off.Time.median(), auto.Time.median()), float64(off.Size)/float64(max(auto.Size, 1)),
				ratio(mx.Time.median(), auto.Time.median()), 100-pct(mx.Size, auto.Size)))
		}
	}
	if len(r.PackSize) > 1 {
		def := r.PackSize[0]
		fast := slices.MinFunc(r.PackSize, func(a, b tuneResult) int { return cmpDur(a.Time.median(), b.Time.median()) })
		if fast.Setting != def.Setting && clearlyFaster(fast.Time, def.Time, noise) {
			out = append(out, fmt.Sprintf("Pack size: `%s` is %.0f%% faster than the default 16 MiB, beyond the spread of three or more runs; larger packs mean fewer files but more to rewrite when prune repacks. Worth setting for large databases.",
				fast.Setting, 100*(1-ratio(fast.Time.median(), def.Time.median()))))
		} else {
			out = append(out, "Pack size: no setting is faster than restic's default 16 MiB beyond the spread of three or more runs: keep the default.")
		}
	}
	var cur *series
	var streams []*series
	for _, s := range r.ReadAhead {
		if s.Key == "stream-discard" {
			continue
		}
		streams = append(streams, s)
		if s.Note != "" {
			cur = s
		}
	}
	if d := r.find("stream-discard"); d != nil && cur != nil && d.median() < cur.median()/2 {
		line := fmt.Sprintf("`restic dump` alone delivers the dump in %s (%.0f MiB/s): the database, not the stream, sets the pace of a restore.",
			secs(d.median()), mibPerSec(d.Bytes, d.median()))
		raw, ours := r.find("raw-restore"), r.find("ours-restore")
		switch {
		case raw == nil || ours == nil:
		case ours.median() > raw.median():
			line += " What remains between ours and a raw restore is restic's fixed cost (opening the repository, one key derivation per restic run) and the session's own steps."
		default:
			line += " Ours beats the single-connection raw restore because it loads tables over two connections; restic's fixed cost (one key derivation per run) is hidden by listing and dumping at once."
		}
		out = append(out, line)
	}
	if len(streams) > 0 {
		fast := slices.MinFunc(streams, func(a, b *series) int { return cmpDur(a.median(), b.median()) })
		switch {
		case cur == nil:
			out = append(out, fmt.Sprintf("Restore stream: fastest `%s` (%s).", fast.Label, secs(fast.median())))
		case fast != cur && clearlyFaster(fast, cur, noise):
			out = append(out, fmt.Sprintf("Single-stream restore: `%s` takes %s against %s for a 1 MiB `bufio.Writer` (%.0f%% faster, beyond the spread of three or more runs): worth trying in pkg/sqlload's client feed.",
				fast.Label, secs(fast.median()), secs(cur.median()), 100*(1-ratio(fast.median(), cur.median()))))
		default:
			out = append(out, fmt.Sprintf("Single-stream restore: no buffer beats a 1 MiB `bufio.Writer` (%s) beyond the spread of three or more runs (fastest: %s, %s): mysql sets the pace.",
				secs(cur.median()), fast.Label, secs(fast.median())))
		}
	}
	return out
}

// clearlyFaster says whether a beats b by more than margin and, over at
// least three runs each, every run of a was faster than every run of b.
func clearlyFaster(a, b *series, margin float64) bool {
	if len(a.Samples) < 3 || len(b.Samples) < 3 {
		return false
	}
	return 1-ratio(a.median(), b.median()) > margin && a.max() < b.min()
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func methodNotes(cfg config) []string {
	return []string{
		"Everything runs on this machine on 127.0.0.1: etcd and kube-apiserver with RBAC, two MariaDB servers (source and restore target), versitygw for S3 and a Pushgateway, all from `test/testenv`. " +
			"The plugin and the agent are built from the working tree; each agent runs as a local process with the command, args and env of its rendered Deployment, as its ServiceAccount.",
		"a: `mysqldump` writes straight to /dev/null. It runs twice per round: with the flags of the issue, and with the agent's flags, which every other figure uses, so that the ratios compare orchestration and not flags.",
		"b: `mysqldump | restic backup --stdin` joined by an OS pipe, into a new, empty local repository; `restic init` runs first and is not timed. restic runs with `--no-cache`, as the agent does. b and c swap places every round, and every backup (b to e) starts after a `sync`, so that no run pays for an earlier run's writes.",
		"c: wall time of `kubectl stash trigger CONFIG --wait` until it exits 0 (Succeeded), with the repository removed and initialised again (not timed) before each run, so the agent finds an empty repository, as b does. " +
			"It includes kubectl's and the plugin's start-up, the agent noticing the session, claiming it, the backup (restic opens the repository, then starts mysqldump), the session's status, events and metrics, and `--wait` noticing the end through its watch; the Repository's statistics come after.",
		"d, e: further `trigger --wait` on the local repository after c; e first rewrites 1% of the rows (not timed). Bytes stored are restic's `data_added_packed` of the new snapshot.",
		"f: the dump of the latest snapshot is written to a file first (not timed), then `mariadb` with the agent's flags reads it, into a target whose benchmark databases were dropped (the `mysql` schema is replaced by the dump, so the target carries the source's users).",
		"g: wall time of `kubectl stash restore --snapshot ID --wait` into the same emptied target, the target's agent already running. f and g swap places every round; the target is quiesced (no dirty InnoDB pages, then `sync`) before each. With an ID the agent lists the snapshots and starts the dump at once (decision 25); `--snapshot latest` costs one more restic run, about a second. Afterwards the target's row counts are checked against the source's.",
		"RSS: /proc/PID/status of the agent (VmRSS every 25 ms, VmHWM at the end) and VmHWM of every restic the agent starts (its descendants, found through /proc/PID/stat). " +
			"Idle: VmRSS each second and utime+stime from /proc/PID/stat over the window, after the settle time, with no schedule active.",
		fmt.Sprintf("Slot to dump: a config with `@every %s` and `--databases %s` is resumed; /proc is polled every 5 ms for new descendants of the agent, and each mysqldump's first sight is compared with its session's slot (the session is named `<config>-<slot unix seconds>`).", cfg.SlotEvery, tinyDB),
		fmt.Sprintf("Status: %d BackupConfigurations with one BackupSession each and one agent Deployment in a namespace, created through the API; then `kubectl stash status` is timed.", cfg.StatusConfigs),
		"Tuning: each setting backs up into a new local repository (init not timed); the size is the repository directory's. The settings rotate their order from round to round; `--compression max` runs in the first round only.",
		"Not in the figures: the time to generate the data, start the servers, and initialise repositories.",
	}
}
