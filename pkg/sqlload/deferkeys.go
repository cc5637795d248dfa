package sqlload

import (
	"bytes"
	"strings"
)

// Deferred secondary indexes. An InnoDB table created with its secondary
// indexes updates each of them for every row loaded, in random order; one
// created with its primary key alone, loaded, then given its indexes in
// one ALTER TABLE builds each of them by a sort. The table comes out the
// same: only plain KEYs are deferred (never PRIMARY, UNIQUE, FULLTEXT or
// SPATIAL, whose meaning or build differ), and tables where an ALTER is not
// a plain index build are left as they are: foreign keys (a key may back
// one), system versioning (an ALTER needs system_versioning_alter_history),
// partitions, other engines, the mysql schema, and a key that is the only
// index of an AUTO_INCREMENT column.

// holdCreate is called for each line of a table's structure while
// deferring: it holds the CREATE TABLE statement, and writes it once it
// ended, without the deferred keys. It reports whether it took the line.
func (s *splitter) holdCreate(l, t []byte) (bool, error) {
	if !s.creating {
		if !bytes.HasPrefix(t, []byte("CREATE TABLE `")) {
			return false, nil
		}
		s.creating, s.create = true, s.create[:0]
	}
	s.create = append(s.create, append([]byte(nil), l...))
	if bytes.HasSuffix(bytes.TrimSpace(t), []byte(";")) {
		return true, s.endCreate()
	}
	return true, nil
}

// endCreate writes the held CREATE TABLE, its deferrable keys left out
// and kept for the ALTER at the end of the table's section.
func (s *splitter) endCreate() error {
	lines := s.create
	s.creating, s.create = false, nil
	s.splitThis = s.splitRows && splittable(lines, s.foreignKey, s.use)
	keep, keys, table := lines, []string(nil), ""
	if s.deferKeys {
		keep, keys, table = deferrable(lines, s.foreignKey, s.use)
	}
	for _, l := range keep {
		if err := s.put(l); err != nil {
			return err
		}
	}
	if len(keys) > 0 {
		s.deferred, s.deferTable = keys, table
	}
	return nil
}

// abandonCreate writes a held CREATE TABLE as it is: a line too long to
// hold came in the middle of it.
func (s *splitter) abandonCreate() error {
	lines := s.create
	s.creating, s.create = false, nil
	for _, l := range lines {
		if err := s.put(l); err != nil {
			return err
		}
	}
	return nil
}

// addDeferred ends a table's section with the ALTER that adds its keys.
func (s *splitter) addDeferred() error {
	if err := s.endChunks(); err != nil {
		return err
	}
	if len(s.deferred) == 0 {
		return nil
	}
	stmt := "ALTER TABLE " + s.deferTable + " ADD " + strings.Join(s.deferred, ", ADD ") + ";\n"
	s.deferred, s.deferTable = nil, ""
	s.deferredTables++
	return s.put([]byte(stmt))
}

// innodbTable reads a held CREATE TABLE statement: its table and the line
// that closes its definitions, when it is a plain InnoDB table in a user
// schema, one an ALTER or a concurrent load treats like any other (no
// foreign key, system versioning, application period or partitions).
func innodbTable(lines [][]byte, foreignKey bool, use string) (table string, end int, ok bool) {
	if foreignKey || use == "USE `mysql`;" || len(lines) < 3 {
		return "", 0, false
	}
	first := strings.TrimRight(string(lines[0]), "\r\n")
	if !strings.HasSuffix(first, " (") {
		return "", 0, false
	}
	table = strings.TrimSuffix(strings.TrimPrefix(first, "CREATE TABLE "), " (")
	// The definitions end at the first line that starts with ")".
	end = -1
	for i, l := range lines {
		if i > 0 && bytes.HasPrefix(l, []byte(")")) {
			end = i
			break
		}
	}
	if end < 0 {
		return "", 0, false
	}
	tail := string(bytes.Join(lines[end:], nil))
	if !strings.Contains(tail, "ENGINE=InnoDB") || strings.Contains(tail, "WITH SYSTEM VERSIONING") || strings.Contains(tail, "PARTITION BY") {
		return "", 0, false
	}
	for _, l := range lines[1:end] {
		d := strings.TrimSpace(string(l))
		if strings.HasPrefix(d, "PERIOD FOR") || strings.Contains(d, "WITH SYSTEM VERSIONING") {
			return "", 0, false
		}
	}
	return table, end, true
}

// deferrable splits a CREATE TABLE statement's lines into those to run
// now and the keys to add after the data; none when the table must keep
// them.
func deferrable(lines [][]byte, foreignKey bool, use string) (keep [][]byte, keys []string, table string) {
	table, end, ok := innodbTable(lines, foreignKey, use)
	if !ok {
		return lines, nil, ""
	}
	autoInc := ""
	for _, l := range lines[1:end] {
		d := strings.TrimSpace(string(l))
		if strings.HasPrefix(d, "`") && strings.Contains(d, " AUTO_INCREMENT") {
			if j := strings.Index(d[1:], "`"); j >= 0 {
				autoInc = d[:j+2]
			}
		}
	}
	var defs [][]byte
	for _, l := range lines[1:end] {
		d := strings.TrimSpace(string(l))
		if strings.HasPrefix(d, "KEY `") && !(autoInc != "" && strings.Contains(d, "("+autoInc)) {
			keys = append(keys, strings.TrimSuffix(d, ","))
			continue
		}
		defs = append(defs, l)
	}
	if len(keys) == 0 {
		return lines, nil, ""
	}
	// The last definition kept must not end with a comma.
	if n := len(defs); n > 0 {
		last := bytes.TrimRight(defs[n-1], "\r\n")
		if bytes.HasSuffix(last, []byte(",")) {
			defs[n-1] = append(append([]byte(nil), last[:len(last)-1]...), defs[n-1][len(last):]...)
		}
	}
	keep = append(append([][]byte{lines[0]}, defs...), lines[end:]...)
	return keep, keys, table
}
