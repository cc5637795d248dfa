package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
)

// readAheadSetting is one way of carrying the restore stream from
// `restic dump` into mysql.
type readAheadSetting struct {
	Kind string // bufio: a bufio.Writer, as the agent does; ring: an asynchronous read-ahead
	Size int64
}

func (s readAheadSetting) String() string {
	return s.Kind + ":" + strings.ReplaceAll(humanBytes(s.Size), ".0 ", "")
}

// label is how the report names the setting.
func (s readAheadSetting) label() string {
	switch s.Kind {
	case "bufio":
		return fmt.Sprintf("bufio.Writer %s", humanBytes(s.Size))
	default:
		return fmt.Sprintf("read-ahead ring %s", humanBytes(s.Size))
	}
}

func defaultReadAhead() []readAheadSetting {
	return []readAheadSetting{
		{"bufio", 1 << 20}, // the reference: a plain 1 MiB buffer
		{"ring", 64 << 10},
		{"ring", 8 << 20},
		{"ring", 32 << 20},
	}
}

// readAheadFlag parses "bufio:1MiB,ring:8MiB".
type readAheadFlag []readAheadSetting

func (f *readAheadFlag) String() string {
	var parts []string
	for _, s := range *f {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, ",")
}

func (f *readAheadFlag) Set(v string) error {
	var out []readAheadSetting
	for _, p := range strings.Split(v, ",") {
		kind, size, ok := strings.Cut(strings.TrimSpace(p), ":")
		if !ok || (kind != "bufio" && kind != "ring") {
			return fmt.Errorf("read-ahead setting %q: want bufio:SIZE or ring:SIZE", p)
		}
		n, err := parseBytes(size)
		if err != nil {
			return err
		}
		if n < 4<<10 {
			return fmt.Errorf("read-ahead setting %q: at least 4KiB", p)
		}
		out = append(out, readAheadSetting{Kind: kind, Size: n})
	}
	*f = out
	return nil
}

// streamWriter wraps w (mysql's stdin) as the setting says. Close flushes
// everything to w and reports the first error; it does not close w.
func (s readAheadSetting) streamWriter(w io.Writer) io.WriteCloser {
	if s.Kind == "bufio" {
		return bufioCloser{bufio.NewWriterSize(w, int(s.Size))}
	}
	return newRing(w, int(s.Size))
}

type bufioCloser struct{ *bufio.Writer }

func (b bufioCloser) Close() error { return b.Flush() }

// ringChunk is the unit a ring moves; restic's output arrives in 32 KiB writes.
const ringChunk = 32 << 10

// ring is an asynchronous read-ahead of up to size bytes: Write copies into
// free chunks and returns at once, while a goroutine writes full chunks to w.
// The producer (restic) and the consumer (mysql) so run decoupled, where a
// bufio.Writer makes the producer wait while it flushes.
type ring struct {
	w    io.Writer
	free chan []byte
	full chan []byte
	done chan error
	cur  []byte
	err  error
	// failed is set once a write to w failed; later chunks are dropped.
	failed atomic.Bool
}

func newRing(w io.Writer, size int) *ring {
	n := max(size/ringChunk, 2)
	r := &ring{w: w, free: make(chan []byte, n), full: make(chan []byte, n), done: make(chan error, 1)}
	for i := 0; i < n; i++ {
		r.free <- make([]byte, 0, ringChunk)
	}
	go r.drain()
	return r
}

func (r *ring) drain() {
	var err error
	for b := range r.full {
		if err == nil {
			if _, err = r.w.Write(b); err != nil {
				r.failed.Store(true)
			}
		}
		r.free <- b[:0]
	}
	r.done <- err
}

var (
	errRingClosed = errors.New("read-ahead: write after close")
	errRingFailed = errors.New("read-ahead: the consumer failed")
)

func (r *ring) Write(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.failed.Load() {
		r.err = errRingFailed
		return 0, r.err
	}
	n := 0
	for len(p) > 0 {
		if r.cur == nil {
			r.cur = <-r.free
		}
		k := copy(r.cur[len(r.cur):cap(r.cur)], p)
		r.cur = r.cur[:len(r.cur)+k]
		p, n = p[k:], n+k
		if len(r.cur) == cap(r.cur) {
			r.full <- r.cur
			r.cur = nil
		}
	}
	return n, nil
}

// Close hands over the last partial chunk and waits until w has everything.
func (r *ring) Close() error {
	if r.err == errRingClosed {
		return nil
	}
	if len(r.cur) > 0 {
		r.full <- r.cur
	}
	r.cur = nil
	close(r.full)
	r.err = errRingClosed
	return <-r.done
}
