package main

import (
	"context"
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
	for i := range backups {
		backups[i].t.Time = &series{Key: backups[i].t.Setting, Bytes: res.Data.DumpBytes}
	}
	for i := 0; i < runs; i++ {
		for j := range backups {
			t := &backups[j].t
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
			sr.Note = "the agent today"
		}
		res.ReadAhead = append(res.ReadAhead, sr)
	}
	for i := 0; i < runs; i++ {
		for j, s := range b.cfg.ReadAhead {
			d, err := b.streamRestore(ctx, src, snap, s)
			if err != nil {
				return err
			}
			res.ReadAhead[j].add(d)
			b.logf("   %s: %s", s, d.Round(time.Millisecond))
		}
	}
	done()
	return emptyTarget(ctx, b.dst)
}
