package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// config is what one run of the benchmark measures and where it writes.
type config struct {
	Mode      string // full or small
	Size      int64  // approximate bytes of the dump
	Runs      int    // each figure is the median of this many runs
	TuneRuns  int    // runs of each restic tuning setting
	Tables    int    // sysbench-shaped tables
	BlobShare int    // percent of the dump held by the BLOB table
	Out       string // the markdown report
	ChartDir  string // the PNG charts
	WorkDir   string // data, repositories, logs; a temporary directory when empty
	Keep      bool   // keep WorkDir afterwards

	SlotEvery     time.Duration // schedule of the slot-to-dump measurement
	Slots         int           // slots measured
	IdleSettle    time.Duration // wait before the idle measurement
	IdleWindow    time.Duration // idle measurement window
	StatusConfigs int           // BackupConfigurations for the status latency
	StatusRuns    int
	ReadAhead     []readAheadSetting
	Timeout       time.Duration // bound on the whole run

	// Only names the one phase to run ("many"), whose section alone is
	// rewritten in Out; empty runs them all and writes the whole report.
	Only       string
	ManyDBs    []int // databases of the many-objects phase, one step each, growing
	ManyTables int   // tables per database
	ManyRuns   int

	LoadRuns int // runs of each setting of the restore-speed phase

	PITRTables, PITRRate, PITRRounds int
	PITRRows                         int64
	PITRWindow, PITRInterval         time.Duration
}

// modeDefaults are the defaults of each mode; flags override them.
func modeDefaults(mode string) (config, error) {
	root := testenv.RepoRoot()
	switch mode {
	case "full":
		return config{
			Mode: mode, Size: 1 << 30, Runs: 5, TuneRuns: 3, Tables: 8, BlobShare: 25,
			Out: filepath.Join(root, "docs", "benchmarks.md"), ChartDir: filepath.Join(root, "docs", "bench"),
			SlotEvery: 10 * time.Second, Slots: 6, IdleSettle: 30 * time.Second, IdleWindow: 30 * time.Second,
			StatusConfigs: 100, StatusRuns: 5, Timeout: 90 * time.Minute, ReadAhead: defaultReadAhead(),
			ManyDBs: []int{10, 100}, ManyTables: 100, ManyRuns: 3, LoadRuns: 3,
			PITRTables: 4, PITRRows: 100_000, PITRRate: 50, PITRWindow: 2 * time.Minute, PITRInterval: 30 * time.Second, PITRRounds: 24,
		}, nil
	case "small":
		return config{
			Mode: mode, Size: 50 << 20, Runs: 1, Tables: 4, BlobShare: 25,
			Out: filepath.Join(root, "bin", "bench-small.md"), ChartDir: filepath.Join(root, "bin", "bench-small"),
			SlotEvery: 5 * time.Second, Slots: 3, IdleSettle: 5 * time.Second, IdleWindow: 10 * time.Second,
			StatusConfigs: 100, StatusRuns: 3, Timeout: 15 * time.Minute,
			// The agent's setting and one read-ahead: enough to prove both paths work.
			ReadAhead: []readAheadSetting{{"bufio", 1 << 20}, {"ring", 8 << 20}},
			ManyDBs:   []int{2, 4}, ManyTables: 10, ManyRuns: 1, LoadRuns: 1,
			PITRTables: 2, PITRRows: 5_000, PITRRate: 20, PITRWindow: 15 * time.Second, PITRInterval: 5 * time.Second, PITRRounds: 2,
		}, nil
	}
	return config{}, fmt.Errorf("-mode %q: want full or small", mode)
}

// parseConfig reads the flags: -mode picks the defaults, the others override them.
func parseConfig(args []string) (config, error) {
	mode := "full"
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "-mode="); ok {
			mode = v
		} else if (a == "-mode" || a == "--mode") && i+1 < len(args) {
			mode = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--mode="); ok {
			mode = v
		}
	}
	c, err := modeDefaults(mode)
	if err != nil {
		return c, err
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	size := byteSize(c.Size)
	ra := readAheadFlag(c.ReadAhead)
	fs.StringVar(&c.Mode, "mode", c.Mode, "full (writes docs/benchmarks.md and docs/bench/*.png) or small (CI; writes bin/bench-small.md)")
	fs.Var(&size, "size", "approximate size of the dump, e.g. 1GiB, 200MiB")
	fs.IntVar(&c.Runs, "runs", c.Runs, "runs per figure; the median is reported")
	fs.IntVar(&c.TuneRuns, "tune-runs", c.TuneRuns, "runs per restic tuning setting (default: 3 in full mode, else -runs)")
	fs.IntVar(&c.Tables, "tables", c.Tables, "sysbench-shaped tables")
	fs.IntVar(&c.BlobShare, "blob-share", c.BlobShare, "percent of the dump in the BLOB table")
	fs.StringVar(&c.Out, "out", c.Out, "markdown report")
	fs.StringVar(&c.ChartDir, "charts", c.ChartDir, "directory of the PNG charts")
	fs.StringVar(&c.WorkDir, "workdir", "", "data, repositories and logs (default: a temporary directory, removed afterwards)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the work directory")
	fs.DurationVar(&c.SlotEvery, "slot-every", c.SlotEvery, "schedule interval of the slot-to-dump measurement")
	fs.IntVar(&c.Slots, "slots", c.Slots, "slots measured for slot-to-dump")
	fs.DurationVar(&c.IdleSettle, "idle-settle", c.IdleSettle, "wait before measuring the idle agent")
	fs.DurationVar(&c.IdleWindow, "idle-window", c.IdleWindow, "window of the idle measurement")
	fs.IntVar(&c.StatusConfigs, "status-configs", c.StatusConfigs, "BackupConfigurations in the namespace for `kubectl stash status`")
	fs.IntVar(&c.StatusRuns, "status-runs", c.StatusRuns, "runs of `kubectl stash status`")
	fs.Var(&ra, "read-ahead", "restore stream settings to compare, e.g. bufio:1MiB,ring:8MiB")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "bound on the whole run")
	fs.StringVar(&c.Only, "only", "", "run one phase and rewrite only its section of -out: many, pitr or restore")
	fs.IntVar(&c.LoadRuns, "load-runs", c.LoadRuns, "runs per setting of the restore-speed phase")
	fs.IntVar(&c.PITRRate, "pitr-rate", c.PITRRate, "transactions per second of the point-in-time phase's load")
	fs.DurationVar(&c.PITRWindow, "pitr-window", c.PITRWindow, "how long the point-in-time phase's load runs")
	fs.DurationVar(&c.PITRInterval, "pitr-interval", c.PITRInterval, "the archive's --pitr-interval")
	fs.IntVar(&c.PITRRounds, "pitr-rounds", c.PITRRounds, "rounds of 1% changes (a \"day\" of them)")
	manyDBs := intList(c.ManyDBs)
	fs.Var(&manyDBs, "many-dbs", "databases at each step of the many-objects phase, growing, e.g. 10,100")
	fs.IntVar(&c.ManyTables, "many-tables", c.ManyTables, "tables per database in the many-objects phase")
	fs.IntVar(&c.ManyRuns, "many-runs", c.ManyRuns, "runs per figure of the many-objects phase")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Size = int64(size)
	c.ReadAhead = ra
	c.ManyDBs = manyDBs
	if c.TuneRuns <= 0 {
		c.TuneRuns = c.Runs
	}
	switch {
	case c.Mode != mode:
		return c, fmt.Errorf("-mode %q given twice differently", c.Mode)
	case c.Size < 4<<20:
		return c, fmt.Errorf("-size %s: at least 4MiB", humanBytes(c.Size))
	case c.Runs < 1 || c.Tables < 1 || c.Slots < 1 || c.StatusRuns < 1:
		return c, fmt.Errorf("-runs, -tables, -slots and -status-runs must be at least 1")
	case c.BlobShare < 0 || c.BlobShare > 90:
		return c, fmt.Errorf("-blob-share %d: want 0..90", c.BlobShare)
	case c.SlotEvery < time.Second:
		return c, fmt.Errorf("-slot-every %s: at least 1s", c.SlotEvery)
	case len(c.ReadAhead) == 0:
		return c, fmt.Errorf("-read-ahead: at least one setting")
	case c.Only != "" && c.Only != phaseMany && c.Only != phasePITR && c.Only != phaseRestore:
		return c, fmt.Errorf("-only %q: the phases that run alone are %q, %q and %q", c.Only, phaseMany, phasePITR, phaseRestore)
	case c.LoadRuns < 1:
		return c, fmt.Errorf("-load-runs %d: at least 1", c.LoadRuns)
	case c.PITRRate < 1 || c.PITRWindow < 5*time.Second || c.PITRInterval < time.Second || c.PITRRounds < 1:
		return c, fmt.Errorf("-pitr-rate, -pitr-window (5s), -pitr-interval (1s) and -pitr-rounds must be at least their minimum")
	case len(c.ManyDBs) == 0 || !increasing(c.ManyDBs) || c.ManyDBs[0] < 1 || c.ManyTables < 2 || c.ManyRuns < 1:
		return c, fmt.Errorf("-many-dbs %v, -many-tables %d, -many-runs %d: want growing steps of at least 1 database, at least 2 tables and 1 run", c.ManyDBs, c.ManyTables, c.ManyRuns)
	}
	return c, nil
}

func increasing(vs []int) bool {
	for i := 1; i < len(vs); i++ {
		if vs[i] <= vs[i-1] {
			return false
		}
	}
	return true
}

// intList is a flag of comma-separated integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(s string) error {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("%q: want integers separated by commas", s)
		}
		out = append(out, v)
	}
	*l = out
	return nil
}

// byteSize is a flag of bytes with an optional KiB/MiB/GiB suffix.
type byteSize int64

func (b *byteSize) String() string { return humanBytes(int64(*b)) }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional KiB, MiB or GiB suffix", s)
	}
	return int64(f * float64(mult)), nil
}

// humanBytes formats bytes in binary units.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
