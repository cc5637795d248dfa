// Command bench measures kubectl stash against the tools users would pick
// instead, on the same generated data: raw mysqldump and mariadb, Stash's
// `mysqldump | restic backup --stdin`, and restic's own settings. It writes
// a markdown report with PNG charts (`make bench`, docs/benchmarks.md).
//
// Every server runs on 127.0.0.1 from test/testenv and is stopped at the end,
// also after an error or a signal.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("stopped (%w), every process it started is stopped: %v", context.Cause(ctx), err)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		cancel()
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	b, err := newBench(cfg, os.Stderr)
	if err != nil {
		return err
	}
	defer b.close()
	r := b.res
	r.Started = time.Now()
	r.Data = planData(cfg)
	r.Machine = readMachine()
	r.Versions = readVersions(ctx, b.toolBin, b.restic)
	b.logf("bench: mode %s, ~%s of dump, %d run(s) per figure, work directory %s", cfg.Mode, humanBytes(cfg.Size), cfg.Runs, b.work)
	phases := []func(context.Context) error{
		b.setup,
		b.generateData,
		b.measureBackups,
		b.measureRestores,
		b.measureLoad,
		b.measureTuning,
		b.measureSlot,
		b.measureIdle,
		b.measureStatus,
		b.measureMany,
		b.measurePITR,
	}
	write := writeReport
	switch cfg.Only {
	case phaseMany:
		phases, write = []func(context.Context) error{b.setup, b.measureMany}, writeManySection
	case phaseRestore:
		phases, write = []func(context.Context) error{b.setup, b.generateData, b.measureLoad}, writeLoadSection
	case phasePITR:
		phases, write = []func(context.Context) error{b.setup, b.measurePITR}, writePITRSection
	}
	for _, phase := range phases {
		if err := phase(ctx); err != nil {
			return err
		}
	}
	r.Elapsed = time.Since(r.Started)
	if err := write(cfg, r); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	b.logf("report written to %s (charts in %s) after %s", cfg.Out, cfg.ChartDir, r.Elapsed.Round(time.Second))
	return nil
}
