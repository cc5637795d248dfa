package sqlload

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// maxOpenSections bounds the sections spooled and not yet loaded, each an
// open file: a dump of many small tables would otherwise hold a file per
// table until the connections catch up (10,000 tables ran out of them).
const maxOpenSections = 256

// punchEvery is how much of a section is read before its disk space is
// given back, so that one large table never needs its full size on disk.
const punchEvery = 8 << 20

// section is one part of the dump, spooled in an unlinked file.
type section struct {
	n    int
	kind kind
	use  string
	// table is the table a table section is about; "" for others.
	table string
	file  *os.File
	// Guarded by spool.mu.
	written, read, punched int64
	closed                 bool
	decided                bool
	// skipped: left out (Options.SkipTable); its bytes are dropped.
	skipped bool
	// part, head and after place the parts of a split table: each part
	// starts once the sections in after have run (closed done).
	part  part
	head  *section
	parts []*section // a head's chunks
	after []*section
	done  chan struct{}
}

// spool holds what the stream delivered and the connections have not read
// yet, at most limit bytes of it (one write more when a write is larger).
// Everything waits on one condition variable: the writer for room, the
// readers for bytes, the scheduler for sections.
type spool struct {
	dir   string
	limit int64

	mu       sync.Mutex
	cond     *sync.Cond
	sections []*section // begun, not yet handed to the scheduler
	all      []*section // every section, for closeAll
	next     int        // number of sections begun
	unread   int64
	peak     int64
	open     int   // sections whose file is open: begun, not yet loaded
	eof      bool  // the stream has ended
	err      error // the load failed: everyone stops
	noPunch  bool
	cur      *section
	skip     func(db, table string) bool
	skipped  int
}

func newSpool(dir string, limit int64, skip func(db, table string) bool) *spool {
	s := &spool{dir: dir, limit: limit, skip: skip}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// begin implements sink.
func (s *spool) begin(k kind, use, table string) error {
	if k == kindTable && s.skip != nil && s.skip(useDatabase(use), strings.TrimSuffix(table, "`")) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cur != nil {
			s.cur.closed, s.cur.decided = true, true
		}
		s.cur = &section{kind: k, use: use, table: table, skipped: true, closed: true, decided: true}
		s.skipped++
		s.cond.Broadcast()
		return s.err
	}
	f, err := s.newFile()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.cur.closed, s.cur.decided = true, true
	}
	sec := &section{n: s.next, kind: k, use: use, table: table, file: f, decided: k == kindSerial, done: make(chan struct{})}
	s.add(sec)
	return s.err
}

// room ends the current section and waits until another may be opened.
// The connections load sections in stream order, all of them before the
// one to come, so they always make room.
func (s *spool) room() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.cur.closed, s.cur.decided = true, true
		s.cond.Broadcast()
	}
	for s.open >= maxOpenSections && s.err == nil {
		s.cond.Wait()
	}
	return s.err
}

// newFile ends the current section, waits for room and opens the next
// section's file, unlinked at once: nothing is left behind if the agent
// is killed.
func (s *spool) newFile() (*os.File, error) {
	if err := s.room(); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.dir, "restore-*.sql")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	_ = os.Remove(f.Name())
	return f, nil
}

// add makes sec the current section; s.mu is held.
func (s *spool) add(sec *section) {
	s.open++
	s.next++
	s.cur = sec
	s.sections = append(s.sections, sec)
	s.all = append(s.all, sec)
	s.cond.Broadcast()
}

// part implements sink: the next part of the current table section, which
// becomes the head at its first chunk. The parts of a skipped table are
// skipped too.
func (s *spool) part(p part) error {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	if cur == nil || cur.skipped {
		return nil
	}
	f, err := s.newFile()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur.closed, cur.decided = true, true
	head := cur.head
	if head == nil {
		cur.part, head = partHead, cur
	}
	sec := &section{n: s.next, kind: kindTable, use: cur.use, table: cur.table, file: f, decided: true, done: make(chan struct{}),
		part: p, head: head}
	if p == partChunk {
		// The first chunk runs alone: InnoDB's bulk insert into an empty
		// table (unique_checks=0 and foreign_key_checks=0, as in every
		// dump) upgrades to a table lock, and two first INSERTs side by
		// side deadlock (ERROR 1213). Once it ran the table is not empty.
		sec.after = []*section{head}
		if len(head.parts) > 0 {
			sec.after = append(sec.after, head.parts[0])
		}
		head.parts = append(head.parts, sec)
	} else {
		sec.after = append([]*section{head}, head.parts...)
	}
	s.add(sec)
	return s.err
}

// decide implements sink.
func (s *spool) decide(k kind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.kind, s.cur.decided = k, true
	s.cond.Broadcast()
}

// write implements sink: it waits while the spool is full.
func (s *spool) write(p []byte) error {
	s.mu.Lock()
	for s.unread >= s.limit && s.err == nil {
		s.cond.Wait()
	}
	if s.err != nil {
		s.mu.Unlock()
		return s.err
	}
	sec := s.cur
	if sec.skipped {
		s.mu.Unlock()
		return nil
	}
	off := sec.written
	s.mu.Unlock()
	// Only this goroutine appends, so the offset stays ours.
	if _, err := sec.file.WriteAt(p, off); err != nil {
		if ferr := s.failed(); ferr != nil {
			return ferr // the load had stopped and closed the spool
		}
		err = fmt.Errorf("spool in %s: %w", s.dir, err)
		s.fail(err)
		return err
	}
	s.mu.Lock()
	sec.written += int64(len(p))
	s.unread += int64(len(p))
	s.peak = max(s.peak, s.unread)
	s.cond.Broadcast()
	s.mu.Unlock()
	return nil
}

// close marks the end of the stream.
func (s *spool) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eof = true
	if s.cur != nil {
		s.cur.closed, s.cur.decided = true, true
	}
	s.cond.Broadcast()
}

// fail stops everyone with err (the first error wins).
func (s *spool) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	s.cond.Broadcast()
}

func (s *spool) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// errNoMore: the stream ended and every section was handed out.
var errNoMore = errors.New("no more sections")

// nextSection waits for the next section in stream order.
func (s *spool) nextSection() (*section, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for (len(s.sections) == 0 || !s.sections[0].decided) && !s.eof && s.err == nil {
		s.cond.Wait()
	}
	if s.err != nil {
		return nil, s.err
	}
	if len(s.sections) == 0 {
		return nil, errNoMore
	}
	sec := s.sections[0]
	s.sections = s.sections[1:]
	return sec, nil
}

// restOf takes the parts of sec's table that follow it, tail included,
// when the whole table is in the spool and another table follows it: then
// other work is waiting, and the table is better loaded on one connection
// than spread over all of them (nil otherwise). Spreading it costs more
// than loading two tables side by side: two connections insert into one
// index.
func (s *spool) restOf(sec *section) []*section {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(s.sections) && s.sections[n].head == sec.head {
		n++
	}
	if n == 0 || n == len(s.sections) || s.sections[n-1].part != partTail {
		return nil
	}
	if next := s.sections[n]; !next.decided || next.kind != kindTable {
		return nil // a serial section must wait for every connection anyway
	}
	rest := append([]*section(nil), s.sections[:n]...)
	s.sections = s.sections[n:]
	return rest
}

// copySection writes a section to w as it arrives, then frees it.
func (s *spool) copySection(sec *section, w io.Writer, buf []byte, loaded func(int)) error {
	for {
		s.mu.Lock()
		for sec.read == sec.written && !sec.closed && s.err == nil {
			s.cond.Wait()
		}
		if s.err != nil {
			s.mu.Unlock()
			return s.err
		}
		avail := sec.written - sec.read
		if avail == 0 && sec.closed {
			s.open--
			s.cond.Broadcast()
			s.mu.Unlock()
			_ = sec.file.Close() // the writer is done with it too
			return nil
		}
		off := sec.read
		s.mu.Unlock()

		n, err := sec.file.ReadAt(buf[:min(int64(len(buf)), avail)], off)
		if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return fmt.Errorf("spool: %w", err)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		loaded(n)
		s.mu.Lock()
		sec.read += int64(n)
		s.unread -= int64(n)
		punch := !s.noPunch && sec.read-sec.punched >= punchEvery
		from := sec.punched
		if punch {
			sec.punched = sec.read
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		if punch && punchHole(sec.file, from, sec.read-from) != nil {
			s.mu.Lock()
			s.noPunch = true // the filesystem cannot: the file goes when done
			s.mu.Unlock()
		}
	}
}

// closeAll closes every section's file (again, for most: that is harmless).
func (s *spool) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range s.all {
		_ = sec.file.Close()
	}
	s.sections, s.all = nil, nil
}

// useDatabase is the database a dump's USE line selects ("" for none).
func useDatabase(use string) string {
	db := strings.TrimSuffix(strings.TrimPrefix(use, "USE `"), "`;")
	if db == use {
		return ""
	}
	return strings.ReplaceAll(db, "``", "`")
}

// qualified names a table section's table as `db`.`table` (just `table`
// when the dump has no USE line); "" for other sections.
func (sec *section) qualified() string {
	if sec.table == "" {
		return ""
	}
	table := "`" + strings.TrimSuffix(sec.table, "`") + "`" // the header's name keeps its closing quote
	db := strings.TrimSuffix(strings.TrimPrefix(sec.use, "USE "), ";")
	if db == "" {
		return table
	}
	return db + "." + table
}
