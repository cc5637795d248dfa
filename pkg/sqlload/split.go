// Package sqlload loads a mysqldump stream over several client connections
// at once. Each table's part of the dump (its structure, data and triggers)
// goes to the next free connection; everything else (the preamble,
// databases, sequences, views, events, routines, grants, the footer) runs
// in stream order on one connection, once every part before it has
// finished. The stream is read once: what the connections have not taken
// yet waits in a bounded spool of unlinked files in a scratch directory.
//
// A stream without mysqldump's section comments (--compact, --skip-comments
// or any other SQL) is loaded in order on one connection.
package sqlload

import (
	"bytes"
	"regexp"
)

// kind is what a section of the dump may run alongside.
type kind uint8

const (
	kindSerial kind = iota // in order, after everything before it
	kindTable              // alongside other tables
)

// part is where a section sits in a table split over several connections
// (splittable.go).
type part uint8

const (
	partWhole part = iota // a whole table, or not a table
	partHead              // the table's structure, up to its first INSERT
	partChunk             // some of its INSERTs, after the head
	partTail              // what follows them, after every chunk
)

// maxHeld is how much of a line is held back before it is known not to be
// a section header: headers, USE and SET lines are short.
const maxHeld = 512

var (
	tableHeader = []byte("-- Table structure for table `")
	dataHeader  = []byte("-- Dumping data for table `")
	// Session settings in the preamble that every connection replays. A
	// SET GLOBAL (GTID_PURGED, say) must run once, so it is not replayed.
	replaySet = regexp.MustCompile(`^(?i)(/\*M?!\d+ +)?SET +`)
	global    = regexp.MustCompile(`(?i)GLOBAL`)
	sandbox   = []byte(`/*M!999999\- enable the sandbox mode */`)
	useLine   = regexp.MustCompile("^USE `(?:[^`]|``)+`;$")
)

// sink receives the split stream.
type sink interface {
	// begin starts a new section; use is the USE line in force ("" if none)
	// and table the table a table section is about. A table section's kind
	// is settled by decide before it may run.
	begin(k kind, use, table string) error
	// decide settles the kind of the current section.
	decide(k kind)
	// write appends to the current section.
	write(p []byte) error
	// part starts the next part of the current table section: a chunk of
	// its INSERTs or the tail after them.
	part(p part) error
}

// splitter finds section boundaries in a mysqldump stream. A boundary is a
// comment header ("--" on its own line, then "-- <title>") outside a
// DELIMITER block: SQL in routine and trigger bodies cannot split the
// stream. Only "Table structure" (or, without structure, "Dumping data")
// headers start table sections; serial parts next to each other stay one
// section.
type splitter struct {
	out          sink
	started      bool
	held         []byte // the start of the current line, not yet written
	inLine       bool   // in the rest of a line longer than maxHeld
	prevDashes   bool   // the previous line was "--"
	delimDefault bool   // outside a DELIMITER block
	cur          kind
	curTable     []byte // the table of the current table section
	undecided    bool   // in a table's structure: it may turn out to have a foreign key
	foreignKey   bool
	use          string // the USE line in force
	preamble     bool   // before the first header
	// replay holds the preamble's session settings, for other connections.
	replay [][]byte

	// Deferred secondary indexes (deferkeys.go).
	deferKeys      bool
	creating       bool     // holding a CREATE TABLE statement
	create         [][]byte // its lines so far
	deferred       []string // the keys the current table gets after its data
	deferTable     string
	deferredTables int

	// Tables split over several connections (splittable.go).
	splitRows   bool  // Options.SplitTables, with more than one connection
	chunkBytes  int64 // a chunk ends at the first INSERT past this size
	splitThis   bool  // the current table may be split
	inData      bool  // past the current table's data header
	chunking    bool  // its INSERTs are going into chunks
	chunkStart  int64 // written when the current chunk began
	written     int64 // bytes passed to the sink
	splitTables int
	chunks      int
}

func newSplitter(out sink) *splitter {
	return &splitter{out: out, delimDefault: true, preamble: true, held: make([]byte, 0, maxHeld)}
}

// Write splits p; it keeps no reference to p.
func (s *splitter) Write(p []byte) (int, error) {
	n := len(p)
	if !s.started {
		s.started = true
		if err := s.out.begin(kindSerial, "", ""); err != nil {
			return 0, err
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if s.inLine {
			if i < 0 {
				return n, s.put(p)
			}
			if err := s.put(p[:i+1]); err != nil {
				return 0, err
			}
			p, s.inLine, s.prevDashes = p[i+1:], false, false
			continue
		}
		end := len(p)
		if i >= 0 {
			end = i + 1
		}
		if len(s.held)+end > maxHeld {
			// Too long for a line worth looking at: write it through.
			take := maxHeld - len(s.held)
			if _, err := s.dataLine(append(s.held, p[:take]...)); err != nil {
				return 0, err
			}
			if s.creating {
				if err := s.abandonCreate(); err != nil {
					return 0, err
				}
			}
			if err := s.put(append(s.held, p[:take]...)); err != nil {
				return 0, err
			}
			p, s.held, s.inLine = p[take:], s.held[:0], true
			continue
		}
		s.held = append(s.held, p[:end]...)
		p = p[end:]
		if i < 0 {
			return n, nil
		}
		if err := s.line(s.held); err != nil {
			return 0, err
		}
		s.held = s.held[:0]
	}
	return n, nil
}

// put passes p to the sink.
func (s *splitter) put(p []byte) error {
	s.written += int64(len(p))
	return s.out.write(p)
}

// flush writes a last line that had no newline, and settles the last section.
func (s *splitter) flush() error {
	var err error
	if len(s.held) > 0 {
		err = s.line(s.held)
		s.held = s.held[:0]
	}
	if s.creating && err == nil {
		err = s.abandonCreate()
	}
	if err == nil {
		err = s.addDeferred()
	}
	s.settle()
	return err
}

// line handles one whole line of at most maxHeld bytes.
func (s *splitter) line(l []byte) error {
	t := bytes.TrimRight(l, "\r\n")
	if drop, err := s.dataLine(t); drop || err != nil {
		return err
	}
	// "-- Host:" belongs to the dump's opening comment, not a section.
	if s.delimDefault && s.prevDashes && bytes.HasPrefix(t, []byte("-- ")) && !bytes.HasPrefix(t, []byte("-- Host: ")) {
		if err := s.header(t); err != nil {
			return err
		}
	}
	if s.undecided && bytes.Contains(t, []byte(" FOREIGN KEY (")) {
		s.foreignKey = true
	}
	s.prevDashes = bytes.Equal(t, []byte("--"))
	if len(t) > 10 && bytes.EqualFold(t[:10], []byte("DELIMITER ")) {
		s.delimDefault = string(bytes.TrimSpace(t[10:])) == ";"
	}
	if s.delimDefault && s.cur == kindSerial && useLine.Match(t) {
		s.use = string(t)
	}
	if st := bytes.TrimSpace(t); s.preamble && s.delimDefault && (bytes.Equal(st, sandbox) || (replaySet.Match(st) && !global.Match(st))) {
		s.replay = append(s.replay, append([]byte(nil), st...))
	}
	if (s.deferKeys || s.splitRows) && s.cur == kindTable && s.undecided && s.delimDefault {
		if took, err := s.holdCreate(l, t); took || err != nil {
			return err
		}
	}
	return s.put(l)
}

func (s *splitter) header(t []byte) error {
	s.preamble = false
	inData, splitThis := s.inData, s.splitThis
	s.inData, s.splitThis = false, false
	var table []byte
	switch {
	case bytes.HasPrefix(t, tableHeader):
		table = t[len(tableHeader):]
	case bytes.HasPrefix(t, dataHeader):
		table = t[len(dataHeader):]
		if s.cur == kindTable && bytes.Equal(table, s.curTable) {
			s.settle() // the data of the table whose structure came first
			s.inData, s.splitThis = !inData, splitThis && !inData
			return nil
		}
	default:
		if s.cur == kindSerial {
			return nil
		}
		if err := s.addDeferred(); err != nil {
			return err
		}
		s.settle()
		s.cur, s.curTable = kindSerial, nil
		return s.out.begin(kindSerial, s.use, "")
	}
	if err := s.addDeferred(); err != nil {
		return err
	}
	s.settle()
	s.cur, s.curTable = kindTable, append(s.curTable[:0:0], table...)
	s.undecided, s.foreignKey = bytes.HasPrefix(t, tableHeader), false
	if err := s.out.begin(kindTable, s.use, string(table)); err != nil {
		return err
	}
	if !s.undecided {
		s.out.decide(kindTable) // data only: nothing to wait for
	}
	return nil
}

// settle decides a table section once its structure has been seen. A
// table with a foreign key runs alone: loading it next to its parent can
// fail ("Table ... was not locked with LOCK TABLES") when one side's DDL
// lands inside the other's LOCK TABLES.
func (s *splitter) settle() {
	if !s.undecided {
		return
	}
	s.undecided = false
	if s.foreignKey {
		s.out.decide(kindSerial)
	} else {
		s.out.decide(kindTable)
	}
}
