package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// dumpArgv is exactly the agent's mysqldump argv for the source with the
// task's args: by default --all-databases.
func (b *bench) dumpArgv(args ...string) []string {
	if len(args) == 0 {
		args = []string{"--all-databases"}
	}
	return b.db.DumpArgv(&database.Files{OptionFile: b.src.OptionFile()}, args)
}

// loadArgv is exactly the agent's mysql argv for the restore target.
func (b *bench) loadArgv() []string {
	return b.db.LoadArgv(&database.Files{OptionFile: b.dst.OptionFile()}, nil)
}

// timeDump runs mysqldump with its output going straight to /dev/null.
func (b *bench) timeDump(ctx context.Context, argv []string) (time.Duration, error) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	return b.timeDumpTo(ctx, argv, null)
}

// timeDumpTo times mysqldump writing to out.
func (b *bench) timeDumpTo(ctx context.Context, argv []string, out *os.File) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, sessionTO)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = b.environ()
	cmd.Stdout = out
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("mysqldump > %s: %w: %s", out.Name(), err, tailLines(errb.String(), 10))
	}
	return time.Since(start), nil
}

// stashPipeline times Stash's data path, `mysqldump | restic backup
// --stdin`, into an empty repository, sampling restic's peak RSS.
func (b *bench) stashPipeline(ctx context.Context, l repoLoc) (time.Duration, *restic.Summary, int64, error) {
	if err := b.freshRepo(ctx, l); err != nil {
		return 0, nil, 0, err
	}
	// Earlier runs' writes reach the disk now, not during this one.
	syscall.Sync()
	ctx, cancel := context.WithTimeout(ctx, sessionTO)
	defer cancel()
	argv := b.dumpArgv()
	dump := exec.CommandContext(ctx, argv[0], argv[1:]...)
	dump.Env = b.environ()
	rst := exec.CommandContext(ctx, b.restic, "-r", l.URL, "--no-cache", "--json", "backup", "--quiet",
		"--host", "host-0", "--stdin", "--stdin-filename", abSrc+".sql")
	rst.Env = b.environ(b.resticEnv(l)...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, nil, 0, err
	}
	dump.Stdout, rst.Stdin = pw, pr
	var dumpErr, resticErr, out bytes.Buffer
	dump.Stderr, rst.Stderr, rst.Stdout = &dumpErr, &resticErr, &out
	start := time.Now()
	if err := rst.Start(); err != nil {
		pr.Close()
		pw.Close()
		return 0, nil, 0, fmt.Errorf("start restic backup --stdin: %w", err)
	}
	if err := dump.Start(); err != nil {
		pr.Close()
		pw.Close()
		_ = rst.Process.Kill()
		_ = rst.Wait()
		return 0, nil, 0, fmt.Errorf("start mysqldump: %w", err)
	}
	pr.Close()
	pw.Close()
	peak := samplePeak(rst.Process.Pid)
	errD := dump.Wait()
	errR := rst.Wait()
	d := time.Since(start)
	hwm := peak()
	if errD != nil {
		return 0, nil, 0, fmt.Errorf("the Stash pipeline: mysqldump: %w: %s", errD, tailLines(dumpErr.String(), 10))
	}
	if errR != nil {
		return 0, nil, 0, fmt.Errorf("the Stash pipeline: restic backup --stdin: %w: %s", errR, tailLines(resticErr.String(), 10))
	}
	sum, err := summaryOf(out.Bytes())
	return d, sum, hwm, err
}

// samplePeak polls a process's VmHWM every 100 ms; the returned function
// stops and gives the last value read (VmHWM only grows).
func samplePeak(pid int) func() int64 {
	stop := make(chan struct{})
	res := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatusKiB(pid, "VmHWM"); err == nil {
				peak = max(peak, v)
			}
			select {
			case <-stop:
				res <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(stop); return <-res }
}

// summaryOf finds restic's summary among its JSON lines.
func summaryOf(out []byte) (*restic.Summary, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if ev, err := restic.DecodeLine(sc.Bytes()); err == nil && ev.Summary != nil {
			return ev.Summary, nil
		}
	}
	return nil, errors.New("restic printed no summary")
}

// resticFromCommand times `restic backup --stdin-from-command -- mysqldump`
// into an empty local repository with extra flags, and returns the
// repository's size afterwards.
func (b *bench) resticFromCommand(ctx context.Context, l repoLoc, flags ...string) (time.Duration, int64, error) {
	if err := b.freshRepo(ctx, l); err != nil {
		return 0, 0, err
	}
	args := append([]string{"-r", l.URL, "--no-cache", "--json", "backup", "--quiet", "--host", "host-0", "--stdin-filename", abSrc + ".sql"}, flags...)
	args = append(append(args, "--stdin-from-command", "--"), b.dumpArgv()...)
	_, d, err := b.run(ctx, sessionTO, nil, b.resticEnv(l), b.restic, args...)
	if err != nil {
		return 0, 0, err
	}
	size, err := dirSize(l.Dir)
	return d, size, err
}

// writeDumpFile writes a snapshot's dump to a file for the raw restore (not timed).
func (b *bench) writeDumpFile(ctx context.Context, l repoLoc, snap restic.Snapshot, path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, sessionTO)
	defer cancel()
	if err := b.resticRepo(l).Dump(ctx, snap.ID, snap.Paths[0], f); err != nil {
		return 0, fmt.Errorf("write the dump file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// rawRestore times `mariadb < dump.sql` (with the agent's flags) into the
// emptied target.
func (b *bench) rawRestore(ctx context.Context, path string) (time.Duration, error) {
	if err := b.prepareTarget(ctx); err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	argv := b.loadArgv()
	_, d, err := b.run(ctx, sessionTO, f, nil, argv[0], argv[1:]...)
	return d, err
}

// streamRestore times `restic dump` piped into mysql through the setting's
// buffer, into the emptied target: the agent's restore data path.
func (b *bench) streamRestore(ctx context.Context, l repoLoc, snap restic.Snapshot, s readAheadSetting) (time.Duration, error) {
	if err := b.prepareTarget(ctx); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, sessionTO)
	defer cancel()
	argv := b.loadArgv()
	mysql := exec.CommandContext(ctx, argv[0], argv[1:]...)
	mysql.Env = b.environ()
	stdin, err := mysql.StdinPipe()
	if err != nil {
		return 0, err
	}
	var errb bytes.Buffer
	mysql.Stderr = &errb
	start := time.Now()
	if err := mysql.Start(); err != nil {
		return 0, fmt.Errorf("start mysql: %w", err)
	}
	w := s.streamWriter(stdin)
	dumpErr := b.resticRepo(l).Dump(ctx, snap.ID, snap.Paths[0], w)
	if err := w.Close(); dumpErr == nil {
		dumpErr = err
	}
	_ = stdin.Close()
	loadErr := mysql.Wait()
	d := time.Since(start)
	if loadErr != nil {
		return 0, fmt.Errorf("restore through %s: mysql: %w: %s", s, loadErr, tailLines(errb.String(), 10))
	}
	if dumpErr != nil {
		return 0, fmt.Errorf("restore through %s: restic dump: %w", s, dumpErr)
	}
	return d, nil
}

// prepareTarget empties the restore target and lets it and the disk settle.
func (b *bench) prepareTarget(ctx context.Context) error {
	if err := emptyTarget(ctx, b.dst); err != nil {
		return err
	}
	return quiesce(ctx, b.dst)
}
