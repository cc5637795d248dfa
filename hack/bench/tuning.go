package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// measureTuning runs restic alone on the same data: compression levels,
// pack sizes, and the restore stream's buffer. The settings take turns in
// each round, so that a slower stretch of the machine does not fall on one.
func (b *bench) measureTuning(ctx context.Context) error {
	runs := b.cfg.TuneRuns
	res := b.res
	loc := b.localRepo("tune")

	done := b.step("tuning: restic backup --stdin-from-command, --compression off|auto|max, --pack-size 32|64")
	backups := []struct {
		flags []string
		t     tuneResult
	}{
		{[]string{"--compression", "off"}, tuneResult{Setting: "--compression off"}},
		{[]string{"--compression", "auto"}, tuneResult{Setting: "--compression auto"}},
		{[]string{"--compression", "max"}, tuneResult{Setting: "--compression max"}},
		{[]string{"--pack-size", "32"}, tuneResult{Setting: "--pack-size 32"}},
		{[]string{"--pack-size", "64"}, tuneResult{Setting: "--pack-size 64"}},
	}
	const maxCompression = 2 // index of --compression max
	for i := range backups {
		backups[i].t.Time = &series{Key: backups[i].t.Setting, Bytes: res.Data.DumpBytes}
	}
	for i := 0; i < runs; i++ {
		for _, j := range rotation(len(backups), i) {
			t := &backups[j].t
			if j == maxCompression && i > 0 {
				continue // five times auto's time: one run decides, and it keeps the full mode near 30 minutes
			}
			d, size, err := b.resticFromCommand(ctx, loc, backups[j].flags...)
			if err != nil {
				return err
			}
			t.Time.add(d)
			t.Size = size
			b.logf("   %s: %s, repository %s", t.Setting, d.Round(time.Millisecond), humanBytes(size))
		}
	}
	for j, bk := range backups {
		if j < 3 {
			res.Compression = append(res.Compression, bk.t)
		}
	}
	// restic's defaults (auto, 16 MiB) are the first pack size row.
	res.PackSize = []tuneResult{{Setting: "--pack-size 16 (default)", Time: backups[1].t.Time, Size: backups[1].t.Size}, backups[3].t, backups[4].t}
	done()

	done = b.step("tuning: restic dump | mysql through each read-ahead setting")
	src := b.localRepo(repoLocal)
	snap, err := b.snapshot(ctx, src, "latest")
	if err != nil {
		return err
	}
	for _, s := range b.cfg.ReadAhead {
		sr := &series{Key: "stream-" + s.String(), Label: s.label(), Bytes: int64(snap.Summary.TotalBytesProcessed)}
		if s == (readAheadSetting{"bufio", 1 << 20}) {
			sr.Note = "the reference"
		}
		res.ReadAhead = append(res.ReadAhead, sr)
	}
	// The ceiling of the stream: restic dump alone, its output discarded.
	alone := &series{Key: "stream-discard", Label: "`restic dump > /dev/null` (no database)", Bytes: int64(snap.Summary.TotalBytesProcessed), Note: "the stream's ceiling"}
	for i := 0; i < runs; i++ {
		start := time.Now()
		if err := b.resticRepo(src).Dump(ctx, snap.ID, snap.Paths[0], io.Discard); err != nil {
			return fmt.Errorf("restic dump > /dev/null: %w", err)
		}
		alone.add(time.Since(start))
		b.logf("   restic dump > /dev/null: %s", alone.Samples[i].Round(time.Millisecond))
		for _, j := range rotation(len(b.cfg.ReadAhead), i) {
			s := b.cfg.ReadAhead[j]
			d, err := b.streamRestore(ctx, src, snap, s)
			if err != nil {
				return err
			}
			res.ReadAhead[j].add(d)
			b.logf("   %s: %s", s, d.Round(time.Millisecond))
		}
	}
	res.ReadAhead = append(res.ReadAhead, alone)
	done()
	return emptyTarget(ctx, b.dst)
}

// rotation is 0..n-1 starting at round % n: each setting takes each place
// in the order once every n rounds.
func rotation(n, round int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (round + i) % n
	}
	return out
}
