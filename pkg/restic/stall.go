package restic

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// A stream has stalled when nothing in it has moved for a while although
// its processes are alive. restic 0.18.1 under --stdin-from-command stops
// reading the dump once it cannot write a temporary pack (a read-only
// TMPDIR), then waits for the dump command, which blocks forever on the
// full pipe: neither exits, and restic prints its error only after the
// command has exited.
//
// What counts as moving:
//   - restic's progress (bytes_done), or bytes restic wrote to us (a dump);
//   - restic's own I/O (/proc/PID/io, less what it wrote to our pipes):
//     reading the dump, uploading a pack at a throttled rate, loading the
//     index of a large repository;
//   - a change in the bytes waiting in the dump's pipe.
//
// What is not a stall, however long: a dump waiting on its database (its
// pipe is empty: a lock wait, a long query before the first row), and a
// restore whose database is slow to take the stream (the agent's own
// write is blocked). The session's time limit bounds those.

// ioActivity is how much I/O of restic's own (besides its stdout and
// stderr) counts as moving; a lock refresh every 5 minutes is far less.
const ioActivity = 1 << 20

// stallGrace is how long restic gets to report its own error once the
// dump was stopped, before it is stopped too.
const stallGrace = 10 * time.Second

// sample is what one look at a running restic found. -1 means unknown
// (the process is gone, or /proc cannot be read).
type sample struct {
	progress uint64 // bytes_done (backup) or bytes received (dump)
	io       int64  // restic's reads and writes, less its stdout and stderr
	queued   int    // bytes waiting in the dump's pipe (backup only)
	// busy says the consumer of a restic dump is still taking a write:
	// the wait is the database's, not restic's.
	busy bool
}

// stallClock tracks when a stream last moved. It is only used by the
// watching goroutine.
type stallClock struct {
	timeout  time.Duration
	lastMove time.Time
	last     sample
	ioAtMove int64
}

func newStallClock(timeout time.Duration, start time.Time) *stallClock {
	return &stallClock{timeout: timeout, lastMove: start, last: sample{io: -1, queued: -1}, ioAtMove: -1}
}

// still records s and reports for how long nothing has moved.
func (c *stallClock) still(now time.Time, s sample) time.Duration {
	moved := s.progress != c.last.progress || s.queued != c.last.queued || s.busy ||
		s.io >= 0 && (c.ioAtMove < 0 || s.io-c.ioAtMove >= ioActivity)
	if moved {
		c.lastMove, c.ioAtMove = now, s.io
	}
	c.last = s
	return now.Sub(c.lastMove)
}

// backupStalled: restic has not moved for the timeout while the dump
// holds unread bytes in its pipe, so the dump is blocked writing and
// restic is not reading.
func (c *stallClock) backupStalled(now time.Time, s sample) bool {
	return c.still(now, s) >= c.timeout && s.queued > 0
}

// dumpStalled: restic dump has sent nothing and done no I/O for the
// timeout while we waited for it. Without /proc (io unknown) the clock
// starts at the first byte, so a long index load is not mistaken for it.
func (c *stallClock) dumpStalled(now time.Time, s sample) bool {
	d := c.still(now, s)
	if s.io < 0 && s.progress == 0 {
		return false
	}
	return d >= c.timeout && !s.busy
}

// stallTick is how often a stream is looked at.
func stallTick(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 100*time.Millisecond), 5*time.Second)
}

// stallWatch watches one restic run for a stalled stream.
type stallWatch struct {
	timeout time.Duration
	backup  bool // --stdin-from-command: look at the dump's pipe
	// progress is bytes_done (backup) or bytes received (dump).
	progress atomic.Uint64
	// busy is set while a dump's consumer takes a write.
	busy atomic.Bool
	// stdio counts what restic wrote to our pipes, to take out of its I/O.
	stdio atomic.Int64
	now   func() time.Time
}

// watch samples restic (pid) until ctx ends. On a stall it calls
// stalled with a description, then stops the dump command (a backup) so
// that restic reports its own error, and after stallGrace calls stop.
func (w *stallWatch) watch(ctx context.Context, pid int, stalled func(string), stop func()) {
	if w == nil || w.timeout <= 0 {
		return
	}
	clock := newStallClock(w.timeout, w.now())
	t := time.NewTicker(stallTick(w.timeout))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := w.sample(pid)
		now := w.now()
		if w.backup && clock.backupStalled(now, s) {
			stalled(fmt.Sprintf("restic read nothing of the dump for %s while the dump waited to write %d bytes more", w.timeout, s.queued))
			killGroupExcept(pid)
			w.grace(ctx, stop)
			return
		}
		if !w.backup && clock.dumpStalled(now, s) {
			stalled(fmt.Sprintf("restic dump sent nothing for %s while the database was ready for more", w.timeout))
			stop()
			return
		}
	}
}

// grace waits for restic to exit on its own (ctx ends), at most stallGrace.
func (w *stallWatch) grace(ctx context.Context, stop func()) {
	t := time.NewTimer(stallGrace)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
		stop()
	}
}

func (w *stallWatch) sample(pid int) sample {
	s := sample{progress: w.progress.Load(), busy: w.busy.Load(), io: -1, queued: -1}
	if n := processIO(pid); n >= 0 {
		s.io = max(n-w.stdio.Load(), 0)
	}
	if w.backup {
		s.queued = childPipeQueued(pid)
	}
	return s
}

// countWriter counts bytes on their way to w.
type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// meterWriter counts the bytes of a dump and marks the time its consumer
// spends taking them.
type meterWriter struct {
	w     io.Writer
	watch *stallWatch
}

func (m meterWriter) Write(p []byte) (int, error) {
	m.watch.busy.Store(true)
	defer m.watch.busy.Store(false)
	n, err := m.w.Write(p)
	m.watch.progress.Add(uint64(n))
	return n, err
}
