package sqlload

import (
	"bytes"
	"strings"
)

// Tables split over several connections. A large table is one section, so
// it loads on one connection however many there are; the server parses
// its INSERTs on one core. A table whose rows may go in any order is cut
// into a head (its structure, up to the first INSERT), chunks of its
// INSERTs, and a tail (what follows them: the deferred keys, triggers).
// The chunks run on any free connection once the head has run, the tail
// once every chunk has.
//
// Rows may go in any order when the table is a plain InnoDB table (see
// innodbTable: no foreign key, versioning or partitions) whose rows are
// placed by a PRIMARY KEY, with no other UNIQUE, FULLTEXT or SPATIAL key:
// every row's place is set by its key, not by when it came, and concurrent
// inserts of distinct keys take no locks that conflict. AUTO_INCREMENT
// values come from the dump, so the order does not change them either.
//
// The data must look like mysqldump's: only LOCK TABLES (dropped: it would
// hold the other connections out), blank and comment lines and ALTER TABLE
// ... DISABLE KEYS before the first INSERT INTO, and each line of the data
// an INSERT INTO or a row of one. Anything else (SET AUTOCOMMIT=0 from
// --no-autocommit, INSERT IGNORE, REPLACE) loads the table whole.

// defaultChunk is the size of a chunk: large enough that the round trip
// that ends it costs nothing, small enough to spread a table over the
// connections soon.
const defaultChunk = 8 << 20

// splittable reports whether a table's rows may load in any order.
func splittable(lines [][]byte, foreignKey bool, use string) bool {
	_, end, ok := innodbTable(lines, foreignKey, use)
	if !ok {
		return false
	}
	primary := false
	for _, l := range lines[1:end] {
		d := strings.TrimSpace(string(l))
		switch {
		case strings.HasPrefix(d, "PRIMARY KEY ("):
			primary = true
		case strings.HasPrefix(d, "UNIQUE KEY"), strings.HasPrefix(d, "FULLTEXT KEY"), strings.HasPrefix(d, "SPATIAL KEY"):
			return false
		}
	}
	return primary
}

// dataLine looks at the start of each line of a splittable table's data:
// it starts a chunk at an INSERT INTO (the first, or the first past the
// chunk's size), starts the tail at the first line that is neither an
// INSERT nor a row of one, and drops LOCK TABLES. It reports whether the
// line is dropped.
func (s *splitter) dataLine(start []byte) (bool, error) {
	if !s.splitThis || !s.inData {
		return false, nil
	}
	table := strings.TrimSuffix(string(s.curTable), "`")
	insert := bytes.HasPrefix(start, []byte("INSERT INTO `"+table+"` "))
	switch {
	case s.chunking && len(start) > 0 && start[0] == '(':
		return false, nil // a row of the statement
	case insert:
		if s.chunking && s.written-s.chunkStart < s.chunkBytes {
			return false, nil
		}
		if !s.chunking {
			s.splitTables++
		}
		s.chunking, s.chunkStart = true, s.written
		s.chunks++
		return false, s.out.part(partChunk)
	case s.chunking:
		return false, s.endChunks()
	}
	// Before the first INSERT: only what is known to be harmless.
	t := string(bytes.TrimSpace(start))
	switch {
	case t == "LOCK TABLES `"+table+"` WRITE;":
		return true, nil
	case t == "", t == "--", strings.HasPrefix(t, "-- Dumping data for table `"), t == "/*!40000 ALTER TABLE `"+table+"` DISABLE KEYS */;":
		return false, nil
	}
	s.splitThis = false
	return false, nil
}

// endChunks starts the tail of a table whose INSERTs went into chunks.
func (s *splitter) endChunks() error {
	if !s.chunking {
		return nil
	}
	s.chunking, s.splitThis = false, false
	return s.out.part(partTail)
}
