package restic

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// feed gives the clock one sample per second from t0 and returns the
// second at which check first said stalled, or -1. The first sample is
// the stream's start, so a stream still from the start stalls at 11 with
// a timeout of 10.
func feed(c *stallClock, t0 time.Time, check func(*stallClock, time.Time, sample) bool, samples func(sec int) sample, secs int) int {
	for i := 1; i <= secs; i++ {
		if check(c, t0.Add(time.Duration(i)*time.Second), samples(i)) {
			return i
		}
	}
	return -1
}

func TestBackupStallRules(t *testing.T) {
	t0 := time.Unix(1000, 0)
	backup := (*stallClock).backupStalled
	cases := []struct {
		name    string
		samples func(sec int) sample
		want    int // second the stall is called, -1 never
	}{
		{"deadlock: a full pipe nobody reads", func(int) sample { return sample{progress: 1 << 20, io: 5000, queued: 65536} }, 11},
		{"a dump waiting on its database: empty pipe", func(int) sample { return sample{progress: 1 << 20, io: 5000, queued: 0} }, -1},
		{"the dump has exited: restic finishing", func(int) sample { return sample{progress: 1 << 20, io: 5000, queued: -1} }, -1},
		{"progress moves", func(s int) sample { return sample{progress: uint64(s) << 20, io: 5000, queued: 65536} }, -1},
		{"a throttled upload: restic's I/O moves", func(s int) sample { return sample{progress: 1 << 20, io: int64(s) * ioActivity, queued: 65536} }, -1},
		{"a trickle of I/O (a lock refresh) is not moving", func(s int) sample { return sample{progress: 1 << 20, io: 5000 + int64(s)*100, queued: 65536} }, 11},
		{"no /proc: never", func(int) sample { return sample{progress: 1 << 20, io: -1, queued: -1} }, -1},
		{"stalls after moving for a while", func(s int) sample {
			if s <= 20 {
				return sample{progress: uint64(s) << 20, io: int64(s) << 20, queued: 65536}
			}
			return sample{progress: 20 << 20, io: 20 << 20, queued: 65536}
		}, 30},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := feed(newStallClock(10*time.Second, t0), t0, backup, c.samples, 60)
			if got != c.want {
				t.Errorf("stalled at second %d, want %d", got, c.want)
			}
		})
	}
}

func TestDumpStallRules(t *testing.T) {
	t0 := time.Unix(1000, 0)
	dump := (*stallClock).dumpStalled
	cases := []struct {
		name    string
		samples func(sec int) sample
		want    int
	}{
		{"restic sends nothing and does nothing", func(int) sample { return sample{progress: 4096, io: 100} }, 11},
		{"the database is slow to take the stream", func(int) sample { return sample{progress: 4096, io: 100, busy: true} }, -1},
		{"restic loads a large index", func(s int) sample { return sample{io: int64(s) * ioActivity} }, -1},
		{"no /proc, before the first byte: never", func(int) sample { return sample{io: -1} }, -1},
		{"no /proc, after the first byte", func(int) sample { return sample{progress: 1, io: -1} }, 11},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := feed(newStallClock(10*time.Second, t0), t0, dump, c.samples, 60)
			if got != c.want {
				t.Errorf("stalled at second %d, want %d", got, c.want)
			}
		})
	}
}

func TestStallTick(t *testing.T) {
	for timeout, want := range map[time.Duration]time.Duration{
		time.Second: 100 * time.Millisecond, 3 * time.Second: 300 * time.Millisecond, 5 * time.Minute: 5 * time.Second,
	} {
		if got := stallTick(timeout); got != want {
			t.Errorf("stallTick(%s) = %s, want %s", timeout, got, want)
		}
	}
}

// unwritableDir is a TMPDIR restic cannot create files in, for root too:
// a regular file where the directory should be.
func unwritableDir(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tmp")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBackupStallOnUnwritableTempDir reproduces restic 0.18.1's deadlock:
// with TMPDIR unwritable and a dump larger than a pipe buffer, restic stops
// reading the dump and waits for it, and the dump blocks on the full
// pipe. Without the stall watch this never returns. With it, the dump is
// stopped once nothing has moved for StallTimeout, restic then reports its
// own cause, and the run ends within StallTimeout + the stall grace + a
// margin for restic's start (bound: 3 s + 10 s + 17 s = 30 s).
func TestBackupStallOnUnwritableTempDir(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.TempDir = unwritableDir(t)
	r.StallTimeout = 3 * time.Second
	start := time.Now()
	sum, err := r.Backup(testContext(t), BackupOptions{
		StdinFilename: "db.sql",
		Command:       []string{"head", "-c", "200000000", "/dev/urandom"},
	})
	took := time.Since(start)
	t.Logf("stopped after %s: %v", took.Round(100*time.Millisecond), err)
	if sum != nil || !errors.Is(err, ErrStalled) {
		t.Fatalf("Backup() = %v, %v; want ErrStalled", sum, err)
	}
	// restic's own cause, printed once the dump was stopped.
	for _, w := range []string{"restic-temp-pack", "not a directory", "read nothing of the dump for 3s"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if took > 30*time.Second {
		t.Errorf("took %s, bound 30s", took)
	}
	if hasProcess(t, "head\x00-c\x00200000000\x00/dev/urandom\x00") {
		t.Error("the dump still runs")
	}
	if snaps, err := r.Snapshots(testContext(t), "", nil); err != nil || len(snaps) != 0 {
		t.Errorf("Snapshots() = %v, %v; want none", snaps, err)
	}
}

// TestSlowDumpIsNotAStall: a dump that writes nothing for longer than the
// stall timeout (a lock wait, a slow first query) leaves its pipe empty,
// and is left alone.
func TestSlowDumpIsNotAStall(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.StallTimeout = time.Second
	sum, err := r.Backup(testContext(t), BackupOptions{
		StdinFilename: "db.sql",
		Command:       []string{"sh", "-c", "echo first; sleep 4; head -c 3000000 /dev/urandom"},
	})
	if err != nil {
		t.Fatalf("a slow dump was stopped: %v", err)
	}
	if sum.TotalBytesProcessed != 3000006 {
		t.Errorf("summary = %+v", sum)
	}
}

// slowWriter takes its first write only after a pause, as a database busy
// with a large table does.
type slowWriter struct {
	pause time.Duration
	n     int
}

func (w *slowWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		time.Sleep(w.pause)
	}
	w.n += len(p)
	return len(p), nil
}

// TestSlowConsumerIsNotAStall: a restore whose database takes its time is
// waited for, however long: restic is not the one standing still.
func TestSlowConsumerIsNotAStall(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	r := newRepo(t)
	sum, err := r.Backup(ctx, BackupOptions{StdinFilename: "db.sql", Command: []string{"head", "-c", "3000000", "/dev/urandom"}})
	if err != nil {
		t.Fatal(err)
	}
	r.StallTimeout = time.Second
	w := &slowWriter{pause: 4 * time.Second}
	if err := r.Dump(ctx, sum.SnapshotID, "/db.sql", w); err != nil {
		t.Fatalf("a slow consumer was stopped: %v", err)
	}
	if w.n != 3000000 {
		t.Errorf("dumped %d bytes", w.n)
	}
}

// freezeOnFirstWrite stops the backend (SIGSTOP) when the first bytes of
// the dump arrive, so the rest of the stream never comes.
type freezeOnFirstWrite struct {
	srv *os.Process
	n   int
}

func (w *freezeOnFirstWrite) Write(p []byte) (int, error) {
	if w.n == 0 {
		_ = w.srv.Signal(syscall.SIGSTOP)
	}
	w.n += len(p)
	return len(p), nil
}

// TestDumpStallOnFrozenBackend: a restore's restic dump whose backend stops
// answering mid-stream (its connections stay open, so restic neither fails
// nor retries for minutes) sends nothing more while the database waits. It
// is stopped once nothing has moved for StallTimeout.
func TestDumpStallOnFrozenBackend(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir, addr := t.TempDir(), freeAddr(t)
	srv := startRestServer(t, dir, addr)
	t.Cleanup(func() { _ = srv.Process.Signal(syscall.SIGCONT) })
	r := &Repo{Binary: resticBinary(t), URL: "rest:http://" + addr + "/repo", Env: map[string]string{"RESTIC_PASSWORD": testPassword}}
	if _, err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	sum, err := r.Backup(ctx, BackupOptions{StdinFilename: "db.sql", Command: []string{"head", "-c", "60000000", "/dev/urandom"}})
	if err != nil {
		t.Fatal(err)
	}
	r.StallTimeout = 3 * time.Second
	w := &freezeOnFirstWrite{srv: srv.Process}
	start := time.Now()
	err = r.Dump(ctx, sum.SnapshotID, "/db.sql", w)
	took := time.Since(start)
	t.Logf("dump stopped after %s, %d of 60000000 bytes: %v", took.Round(100*time.Millisecond), w.n, err)
	if w.n >= 60000000 {
		t.Skip("restic had fetched the whole file before the backend froze")
	}
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "restic dump sent nothing for 3s") {
		t.Fatalf("Dump() error = %v, want ErrStalled", err)
	}
	if took > 30*time.Second {
		t.Errorf("took %s, bound 30s", took)
	}
}
