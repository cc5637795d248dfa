package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "200MiB": 200 << 20, "50M": 50 << 20, "1.5GiB": 3 << 29, "4096": 4096, "64KiB": 64 << 10} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "ten"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q): no error", in)
		}
	}
}

func TestParseConfigModes(t *testing.T) {
	c, err := parseConfig([]string{"-mode", "small"})
	if err != nil || c.Size != 50<<20 || c.Runs != 1 || c.TuneRuns != 1 || c.Mode != "small" {
		t.Fatalf("small: %+v, %v", c, err)
	}
	c, err = parseConfig([]string{"-mode=full", "-size", "200MiB", "-read-ahead", "bufio:64KiB,ring:8MiB"})
	if err != nil || c.Size != 200<<20 || c.Runs != 5 || c.TuneRuns != 3 || len(c.ReadAhead) != 2 || c.ReadAhead[1] != (readAheadSetting{"ring", 8 << 20}) {
		t.Fatalf("full with flags: %+v, %v", c, err)
	}
	for _, args := range [][]string{{"-mode", "huge"}, {"-size", "1KiB"}, {"-read-ahead", "pipe:1MiB"}, {"extra"}} {
		if _, err := parseConfig(args); err == nil {
			t.Errorf("parseConfig(%q): no error", args)
		}
	}
}

func TestPlanDataMatchesSize(t *testing.T) {
	for _, size := range []int64{50 << 20, 1 << 30} {
		cfg, _ := modeDefaults("full")
		cfg.Size = size
		d := planData(cfg)
		est := int64(d.Tables)*d.RowsPerTable*sbRowDumpBytes + d.Blobs*blobRowDumpBytes
		if est < size*95/100 || est > size*105/100 {
			t.Errorf("size %d: plan %+v estimates %d bytes", size, d, est)
		}
		if share := float64(d.Blobs*blobRowDumpBytes) / float64(est); share < 0.2 || share > 0.3 {
			t.Errorf("size %d: BLOB share %.2f, want about 0.25", size, share)
		}
	}
}

func TestCountMod(t *testing.T) {
	for _, n := range []int64{0, 1, 99, 100, 101, 12345} {
		for _, r := range []int{0, 1, 45, 99} {
			var want int64
			for id := int64(1); id <= n; id++ {
				if id%100 == int64(r) {
					want++
				}
			}
			if got := countMod(n, r); got != want {
				t.Errorf("countMod(%d, %d) = %d, want %d", n, r, got, want)
			}
		}
	}
}

func TestMedian(t *testing.T) {
	s := series{Samples: []time.Duration{3, 1, 2}}
	if s.median() != 2 || s.min() != 1 || s.max() != 3 {
		t.Fatalf("median/min/max of %v: %v %v %v", s.Samples, s.median(), s.min(), s.max())
	}
	s.add(10)
	if s.median() != 2 { // (2+3)/2 in integer nanoseconds
		t.Fatalf("even median: %v", s.median())
	}
	if medianInt([]int64{5, 1, 9, 7}) != 6 {
		t.Fatal("medianInt")
	}
}

// slowWriter takes its time, as mysql does.
type slowWriter struct {
	buf   bytes.Buffer
	calls int
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.calls%50 == 0 {
		time.Sleep(time.Millisecond)
	}
	return w.buf.Write(p)
}

func TestStreamWritersDeliverEveryByteInOrder(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	for _, s := range []readAheadSetting{{"bufio", 64 << 10}, {"bufio", 1 << 20}, {"ring", 4 << 10}, {"ring", 64 << 10}, {"ring", 8 << 20}} {
		var dst slowWriter
		w := s.streamWriter(&dst)
		// Writes of odd sizes, as a pipe delivers them.
		for off, step := 0, 1; off < len(data); step = step*7%40000 + 1 {
			end := min(off+step, len(data))
			if n, err := w.Write(data[off:end]); err != nil || n != end-off {
				t.Fatalf("%s: Write = %d, %v", s, n, err)
			}
			off = end
		}
		if err := w.Close(); err != nil {
			t.Fatalf("%s: Close: %v", s, err)
		}
		if !bytes.Equal(dst.buf.Bytes(), data) {
			t.Fatalf("%s: %d bytes arrived, want the %d written, in order", s, dst.buf.Len(), len(data))
		}
	}
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n += len(p); w.n > 100<<10 {
		return 0, io.ErrClosedPipe
	}
	return len(p), nil
}

func TestRingReportsTheConsumersError(t *testing.T) {
	w := newRing(&failingWriter{}, 64<<10)
	chunk := make([]byte, 32<<10)
	var werr error
	for i := 0; i < 1000 && werr == nil; i++ {
		_, werr = w.Write(chunk)
	}
	if !errors.Is(werr, errRingFailed) {
		t.Fatalf("Write after the consumer failed: %v, want errRingFailed", werr)
	}
	if err := w.Close(); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Close: %v, want the consumer's error", err)
	}
}

func TestKeptNotesCarriesTheHandWrittenBlock(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/r.md"
	if keptNotes(path) != "" {
		t.Fatal("notes from a missing file")
	}
	block := notesBegin + "\n## Decisions\n\nkeep auto\n" + notesEnd
	if err := os.WriteFile(path, []byte("# old\n\n| a | 1 |\n\n"+block+"\n\n## Charts\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := keptNotes(path); got != block {
		t.Fatalf("keptNotes = %q, want %q", got, block)
	}
}

func TestRotationPutsEachSettingInEachPlace(t *testing.T) {
	n := 4
	firsts := map[int]bool{}
	for round := 0; round < n; round++ {
		r := rotation(n, round)
		seen := map[int]bool{}
		for _, j := range r {
			seen[j] = true
		}
		if len(seen) != n {
			t.Fatalf("round %d: %v is not a permutation", round, r)
		}
		firsts[r[0]] = true
	}
	if len(firsts) != n {
		t.Fatalf("over %d rounds the first places were %v", n, firsts)
	}
}

func TestClearlyFasterNeedsThreeSeparatedRuns(t *testing.T) {
	s := func(ds ...time.Duration) *series { return &series{Samples: ds} }
	if clearlyFaster(s(5), s(10), 0.03) {
		t.Error("one run each counted as clearly faster")
	}
	if !clearlyFaster(s(5, 6, 7), s(10, 11, 12), 0.03) {
		t.Error("separated runs not counted as faster")
	}
	if clearlyFaster(s(5, 6, 11), s(10, 11, 12), 0.03) {
		t.Error("overlapping runs counted as faster")
	}
	if clearlyFaster(s(99, 99, 99), s(100, 100, 100), 0.03) {
		t.Error("a 1% gain counted as faster")
	}
}

func TestWriteReportFromSyntheticResults(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := modeDefaults("full")
	cfg.Out, cfg.ChartDir = dir+"/docs/benchmarks.md", dir+"/docs/bench"
	cfg.TuneRuns = 3
	sec := func(f ...float64) []time.Duration {
		var out []time.Duration
		for _, v := range f {
			out = append(out, time.Duration(v*float64(time.Second)))
		}
		return out
	}
	mk := func(key string, f ...float64) *series {
		return &series{Key: key, Label: key, Samples: sec(f...), Bytes: 1 << 30}
	}
	r := &results{
		Data:    dataInfo{Tables: 8, RowsPerTable: 100, Blobs: 10, DumpBytes: 1 << 30, StoredFull: 500 << 20},
		Backup:  []*series{mk("dump", 9, 9.1, 9.2), mk("dump-agent", 9), mk("stash", 21, 21.3, 22), mk("ours-local", 22, 22.1, 22.5), mk("ours-s3", 25), mk("ours-unchanged", 13), mk("ours-changed", 20)},
		Restore: []*series{mk("raw-restore", 51, 52, 53), mk("ours-restore", 53, 54, 55)},
		ReadAhead: []*series{
			{Key: "stream-bufio:1MiB", Label: "bufio.Writer 1.0 MiB", Note: "the reference", Samples: sec(55, 56, 57)},
			{Key: "stream-ring:8MiB", Label: "read-ahead ring 8.0 MiB", Samples: sec(50, 50.5, 51)},
			{Key: "stream-discard", Label: "restic dump alone", Samples: sec(10, 10, 10), Bytes: 1 << 30},
		},
		Compression:    []tuneResult{{"--compression off", mk("off", 16, 16, 16), 1 << 30}, {"--compression auto", mk("auto", 20, 20, 20), 500 << 20}, {"--compression max", mk("max", 100), 460 << 20}},
		PackSize:       []tuneResult{{"--pack-size 16 (default)", mk("auto", 20, 20, 20), 500 << 20}, {"--pack-size 32", mk("p32", 19.9, 20, 20.1), 500 << 20}},
		AgentBackupHWM: 40 << 10, IdleRSS: 25 << 10, SlotToDump: sec(0.4, 0.5, 0.6),
		StatusLatency: mk("status", 0.3), PluginStartup: mk("plugin", 0.2),
	}
	block := notesBegin + "\nkeep me\n" + notesEnd
	if err := os.MkdirAll(dir+"/docs", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Out, []byte("old\n"+block+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(cfg, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"| backup end to end ≤ 1.05x Stash's pipeline | ours 22.10 s, Stash's pipeline 21.30 s | 1.04x | PASS |",
		"| restore end to end ≤ 1.05x `mariadb < dump.sql` | ours 54.00 s, raw 52.00 s | 1.04x | PASS |",
		"| agent RSS idle < 30 MiB |", "median 0.50 s of 3 slots",
		"worth trying in pkg/sqlload", // the ring is faster in every run
		"Pack size: no setting is faster", block,
		"![backup](bench/backup.png)", "![restore](bench/restore.png)",
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, png := range []string{"backup.png", "restore.png", "tuning.png"} {
		if st, err := os.Stat(cfg.ChartDir + "/" + png); err != nil || st.Size() < 1000 {
			t.Errorf("chart %s: %v", png, err)
		}
	}
}

func TestReplaceSectionRewritesOnlyItsBlock(t *testing.T) {
	sec := func(body string) string { return manyBegin + "\n" + body + "\n" + manyEnd + "\n" }
	notes := notesBegin + "\nmine\n" + notesEnd + "\n"
	for _, c := range []struct{ name, doc, want string }{
		{"replaced in place", "# B\nfigures\n" + sec("old") + "## Charts\n", "# B\nfigures\n" + sec("new") + "## Charts\n"},
		{"before the notes when absent", "# B\nfigures\n\n" + notes, "# B\nfigures\n\n" + sec("new") + "\n" + notes},
		{"appended without notes", "# B\nfigures", "# B\nfigures\n\n" + sec("new")},
		{"a new file", "", "\n" + sec("new")},
	} {
		if got := replaceSection(c.doc, sec("new"), manyBegin, manyEnd); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestManySectionReportsGrowth(t *testing.T) {
	cfg, _ := modeDefaults("full")
	sec := func(s float64) *series {
		return &series{Samples: []time.Duration{time.Duration(s * float64(time.Second))}}
	}
	r := &results{Many: []manyStep{
		{DBs: 10, Tables: 100, DumpBytes: 1 << 20, RawDump: sec(2), Backup: sec(4), RawRestore: sec(5), Restore: sec(6)},
		{DBs: 100, Tables: 100, DumpBytes: 10 << 20, RawDump: sec(20), Backup: sec(30), RawRestore: sec(50), Restore: sec(60)},
	}}
	md := manySection(cfg, r)
	for _, want := range []string{
		"| 1000 | 10 | 1.0 MiB | 2.00 s | 4.00 s | 2.00x | 5.00 s | 6.00 s | 1.20x | 4.0 ms, 6.0 ms |",
		"| 10000 | 100 | 10.0 MiB | 20.00 s | 30.00 s | 1.50x | 50.00 s | 60.00 s | 1.20x | 3.0 ms, 6.0 ms |",
		"From 1000 to 10000 tables (10x the tables), the time grew: raw mysqldump 10.0x, ours backup 7.5x, raw restore 10.0x, ours restore 10.0x.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
	if !strings.HasPrefix(md, manyBegin) || !strings.HasSuffix(md, manyEnd+"\n") {
		t.Errorf("section is not between its markers:\n%s", md)
	}
}

func TestPITRSectionComparesWithTheAlternative(t *testing.T) {
	cfg, _ := modeDefaults("full")
	r := &results{PITR: &pitrResult{Data: dataInfo{Tables: 4, RowsPerTable: 1000}, Rate: 50, Window: time.Minute, Interval: 30 * time.Second,
		LagMean: 15 * time.Second, LagMax: 31 * time.Second, FullBackup: 10 * time.Second, Rounds: 24, Changed: 40,
		BinlogGrowth: 1 << 20, DumpGrowth: 24 << 20, ReplayTx: 1000, BaseRestore: 10 * time.Second, LatestRestore: 12 * time.Second}}
	md := pitrSection(cfg, r)
	for _, want := range []string{
		"| mean 15.00 s, max 31.00 s |", "each adding 1.0 MiB to the repository | 3.10x (max / one backup) |",
		"| 1.0 MiB | a full dump after each round: 24.0 MiB | 0.042x |",
		"| 12.00 s (500 transactions/s in the replay) | the base alone: 10.00 s | 1.20x |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
}
