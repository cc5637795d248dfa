package sqlload

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

type recSection struct {
	kind kind
	use  string
	part part
	body bytes.Buffer
}

type recorder struct{ secs []*recSection }

func (r *recorder) begin(k kind, use, _ string) error {
	r.secs = append(r.secs, &recSection{kind: k, use: use})
	return nil
}

func (r *recorder) decide(k kind) { r.secs[len(r.secs)-1].kind = k }

func (r *recorder) part(p part) error {
	cur := r.secs[len(r.secs)-1]
	r.secs = append(r.secs, &recSection{kind: kindTable, use: cur.use, part: p})
	return nil
}

func (r *recorder) write(p []byte) error {
	r.secs[len(r.secs)-1].body.Write(p)
	return nil
}

// dumpShape is the shape of mysqldump's output: two databases, a table with
// a trigger, a view, events and a routine whose body holds a header-like
// comment.
const dumpShape = "/*M!999999\\- enable the sandbox mode */ \n" +
	"-- MariaDB dump 10.19\n--\n-- Host: localhost\n\n" +
	"/*!40101 SET NAMES utf8mb4 */;\n" +
	"/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n" +
	"/*!50700 SET @@GLOBAL.GTID_PURGED='x' */;\n\n" +
	"--\n-- Current Database: `a`\n--\n\nCREATE DATABASE `a`;\n\nUSE `a`;\n\n" +
	"--\n-- Table structure for table `t1`\n--\n\nCREATE TABLE `t1` (id INT);\n\n" +
	"--\n-- Dumping data for table `t1`\n--\n\nLOCK TABLES `t1` WRITE;\nINSERT INTO `t1` VALUES (1);\nUNLOCK TABLES;\n" +
	"DELIMITER ;;\n/*!50003 CREATE TRIGGER tr BEFORE INSERT ON t1 FOR EACH ROW BEGIN\n--\n-- Table structure for table `fake`\n--\nSET NEW.id = 1; END */;;\nDELIMITER ;\n\n" +
	"--\n-- Table structure for table `t2`\n--\n\nCREATE TABLE `t2` (id INT);\n\n" +
	"--\n-- Temporary table structure for view `v`\n--\n\nCREATE VIEW `v` AS SELECT 1;\n\n" +
	"--\n-- Dumping routines for database 'a'\n--\nDELIMITER ;;\nCREATE PROCEDURE p() BEGIN\n--\n-- Current Database: `evil`\n--\nSELECT 1; END ;;\nDELIMITER ;\n\n" +
	"--\n-- Current Database: `b`\n--\n\nCREATE DATABASE `b`;\n\nUSE `b`;\n\n" +
	"--\n-- Dumping data for table `t3`\n--\n\nINSERT INTO `t3` VALUES (3);\n\n" +
	"/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;\n\n-- Dump completed on 2026-11-24\n"

func split(t *testing.T, in string, chunk int) (*splitter, *recorder) {
	t.Helper()
	r := &recorder{}
	s := newSplitter(r)
	for i := 0; i < len(in); i += chunk {
		if _, err := s.Write([]byte(in[i:min(i+chunk, len(in))])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	return s, r
}

func TestSplitSections(t *testing.T) {
	for _, chunk := range []int{1, 7, 64, 1 << 20} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			s, r := split(t, dumpShape, chunk)
			var got []string
			var all strings.Builder
			for _, sec := range r.secs {
				k := "serial"
				if sec.kind == kindTable {
					k = "table"
				}
				first := ""
				for _, l := range strings.Split(sec.body.String(), "\n") {
					if strings.HasPrefix(l, "-- ") {
						first = l
						break
					}
				}
				got = append(got, fmt.Sprintf("%s %s | %s", k, sec.use, first))
				all.WriteString(sec.body.String())
			}
			want := []string{
				"serial  | -- MariaDB dump 10.19",
				"table USE `a`; | -- Table structure for table `t1`",
				"table USE `a`; | -- Table structure for table `t2`",
				"serial USE `a`; | -- Temporary table structure for view `v`",
				"table USE `b`; | -- Dumping data for table `t3`",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("sections:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if all.String() != dumpShape {
				t.Errorf("the sections do not add up to the stream")
			}
			var replay []string
			for _, l := range s.replay {
				replay = append(replay, string(l))
			}
			wantReplay := []string{"/*M!999999\\- enable the sandbox mode */", "/*!40101 SET NAMES utf8mb4 */;",
				"/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;"}
			if strings.Join(replay, "\n") != strings.Join(wantReplay, "\n") {
				t.Errorf("replayed settings:\n%s\nwant:\n%s", strings.Join(replay, "\n"), strings.Join(wantReplay, "\n"))
			}
		})
	}
}

// A line longer than what is held is passed through whole, and a header
// right after it is still found.
func TestSplitLongLines(t *testing.T) {
	long := "INSERT INTO `t` VALUES ('" + strings.Repeat("x", 3*maxHeld+5) + "');\n"
	in := "--\n-- Table structure for table `t`\n--\n" + long + "--\n-- Table structure for table `u`\n--\n" + long + "no newline at the end"
	for _, chunk := range []int{1, 100, maxHeld, 1 << 20} {
		_, r := split(t, in, chunk)
		var all strings.Builder
		tables := 0
		for _, sec := range r.secs {
			all.WriteString(sec.body.String())
			if sec.kind == kindTable {
				tables++
			}
		}
		if all.String() != in {
			t.Fatalf("chunk %d: the sections do not add up to the stream", chunk)
		}
		if tables != 2 {
			t.Errorf("chunk %d: %d table sections, want 2", chunk, tables)
		}
	}
}

// Without mysqldump's comments everything is one serial section.
func TestSplitCompactDump(t *testing.T) {
	in := "CREATE TABLE t (id INT);\nINSERT INTO t VALUES (1);\n-- a comment\nCREATE TABLE u (id INT);\n"
	_, r := split(t, in, 5)
	if len(r.secs) != 1 || r.secs[0].kind != kindSerial {
		t.Fatalf("%d sections, want one serial section", len(r.secs))
	}
}

// A table with a foreign key runs alone; its parent does not need to.
func TestSplitForeignKeyTableRunsAlone(t *testing.T) {
	in := "--\n-- Table structure for table `child`\n--\n\nCREATE TABLE `child` (\n  `id` int,\n  CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`)\n);\n\n" +
		"--\n-- Dumping data for table `child`\n--\n\nINSERT INTO `child` VALUES (1,1);\n" +
		"--\n-- Table structure for table `parent`\n--\n\nCREATE TABLE `parent` (`id` int);\n"
	_, r := split(t, in, 3)
	var kinds []kind
	for _, sec := range r.secs {
		kinds = append(kinds, sec.kind)
	}
	if fmt.Sprint(kinds) != fmt.Sprint([]kind{kindSerial, kindSerial, kindTable}) {
		t.Errorf("kinds %v, want the preamble and child serial, parent a table", kinds)
	}
}

// tableDump is one table's part of a dump in mysqldump's shape: its
// structure, then data with rows on lines of their own (as mariadb-dump
// 10.11 writes them) or whole statements on one line (as older dumps do).
func tableDump(create, dataStart string, rowsPerLine bool, stmts int) string {
	var b strings.Builder
	b.WriteString("--\n-- Table structure for table `t`\n--\n\nDROP TABLE IF EXISTS `t`;\n" + create +
		"\n--\n-- Dumping data for table `t`\n--\n\n" + dataStart)
	for i := range stmts {
		b.WriteString("INSERT INTO `t` VALUES ")
		sep := ","
		if rowsPerLine {
			b.WriteString("\n")
			sep = ",\n"
		}
		for r := range 20 {
			if r > 0 {
				b.WriteString(sep)
			}
			fmt.Fprintf(&b, "(%d,%d,'%s')", i*20+r, r, strings.Repeat("v", 40))
		}
		b.WriteString(";\n")
	}
	b.WriteString("/*!40000 ALTER TABLE `t` ENABLE KEYS */;\nUNLOCK TABLES;\n" +
		"DELIMITER ;;\n/*!50003 CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.k = 1 */;;\nDELIMITER ;\n\n" +
		"--\n-- Table structure for table `u`\n--\n\nCREATE TABLE `u` (id INT);\n")
	return b.String()
}

// A table whose chunks come while another table waits in the spool runs
// on one connection, chunks and tail in a chain; the last table, with
// nothing after it, is spread over the connections.
func TestRestOfChainsATableWhenAnotherWaits(t *testing.T) {
	tbl := tableDump(splittableCreate, lockedData, true, 12)
	tbl = tbl[:strings.Index(tbl, "--\n-- Table structure for table `u`")]
	in := "-- MariaDB dump\n\n" + tbl + strings.ReplaceAll(tbl, "`t`", "`t2`")
	sp := newSpool(t.TempDir(), 1<<30, nil)
	s := newSplitter(sp)
	s.splitRows, s.chunkBytes = true, 3000
	if _, err := s.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	sp.close()
	defer sp.closeAll()
	var chains []int
	for {
		sec, err := sp.nextSection()
		if err != nil {
			break
		}
		if sec.part != partChunk {
			continue
		}
		chains = append(chains, len(sp.restOf(sec)))
	}
	// t: 4 chunks, the first takes the 3 others and the tail; t2: each
	// chunk alone, since nothing follows it.
	if fmt.Sprint(chains) != "[4 0 0 0 0]" {
		t.Errorf("rest taken at each chunk: %v, want [4 0 0 0 0]", chains)
	}
}

const (
	splittableCreate = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `k` int(11) DEFAULT NULL,\n  `c` char(40) DEFAULT NULL,\n" +
		"  PRIMARY KEY (`id`),\n  KEY `k` (`k`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
	lockedData = "LOCK TABLES `t` WRITE;\n/*!40000 ALTER TABLE `t` DISABLE KEYS */;\n"
)

// A table whose rows may load in any order is cut into a head without
// LOCK TABLES, chunks that each start at an INSERT, and a tail with the
// deferred keys and the trigger; the parts add up to the table.
func TestSplitTableIntoChunks(t *testing.T) {
	for _, rowsPerLine := range []bool{true, false} {
		in := tableDump(splittableCreate, lockedData, rowsPerLine, 12)
		for _, feed := range []int{1, 97, 1 << 20} {
			r := &recorder{}
			s := newSplitter(r)
			s.splitRows, s.deferKeys, s.chunkBytes = true, true, 3000
			for i := 0; i < len(in); i += feed {
				if _, err := s.Write([]byte(in[i:min(i+feed, len(in))])); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.flush(); err != nil {
				t.Fatal(err)
			}
			var parts []part
			var all strings.Builder
			for _, sec := range r.secs[1:] {
				parts = append(parts, sec.part)
				all.WriteString(sec.body.String())
				if sec.part == partChunk && !strings.HasPrefix(sec.body.String(), "INSERT INTO `t` VALUES ") {
					t.Fatalf("rows per line %v, feed %d: a chunk starts with %.40q", rowsPerLine, feed, sec.body.String())
				}
			}
			// 12 statements of ~1.1 KiB: a chunk ends at the first INSERT past 3000 bytes.
			want := []part{partWhole, partChunk, partChunk, partChunk, partChunk, partTail, partWhole}
			if fmt.Sprint(parts) != fmt.Sprint(want) || s.splitTables != 1 || s.chunks != 4 {
				t.Fatalf("rows per line %v, feed %d: parts %v (%d tables, %d chunks), want %v", rowsPerLine, feed, parts, s.splitTables, s.chunks, want)
			}
			// The first "--" ends the section before; the ALTER comes at the next header.
			wantAll := strings.Replace(strings.Replace(in[strings.Index(in, "-- Table structure for table `t`"):], "LOCK TABLES `t` WRITE;\n", "", 1),
				",\n  KEY `k` (`k`)\n", "\n", 1)
			tail := r.secs[len(r.secs)-2].body.String()
			if !strings.Contains(tail, "CREATE TRIGGER") || !strings.HasSuffix(tail, "ALTER TABLE `t` ADD KEY `k` (`k`);\n") {
				t.Errorf("the tail lacks the trigger or the deferred key:\n%s", tail)
			}
			wantAll = strings.Replace(wantAll, "DELIMITER ;\n\n--\n", "DELIMITER ;\n\n--\nALTER TABLE `t` ADD KEY `k` (`k`);\n", 1)
			if all.String() != wantAll {
				t.Fatalf("rows per line %v, feed %d: the parts do not add up to the table:\n%s\nwant:\n%s", rowsPerLine, feed, all.String(), wantAll)
			}
		}
	}
}

// Tables whose rows' order or session state matters load whole, and keep
// their LOCK TABLES unless it was already passed.
func TestSplitKeepsTablesWhole(t *testing.T) {
	for name, c := range map[string]struct{ create, data string }{
		"no primary key": {strings.Replace(splittableCreate, "  PRIMARY KEY (`id`),\n", "", 1), lockedData},
		"unique key":     {strings.Replace(splittableCreate, "KEY `k`", "UNIQUE KEY `k`", 1), lockedData},
		"foreign key": {strings.Replace(splittableCreate, "  KEY `k` (`k`)\n", "  KEY `k` (`k`),\n  CONSTRAINT `f` FOREIGN KEY (`k`) REFERENCES `u` (`id`)\n", 1),
			lockedData},
		"aria":          {strings.Replace(splittableCreate, "InnoDB", "Aria", 1), lockedData},
		"partitioned":   {strings.Replace(splittableCreate, ";\n", "\n PARTITION BY HASH (`id`) PARTITIONS 2;\n", 1), lockedData},
		"no-autocommit": {splittableCreate, "SET @OLD_AUTOCOMMIT=@@AUTOCOMMIT, @@AUTOCOMMIT=0;\n" + lockedData},
		"insert ignore": {splittableCreate, lockedData + "INSERT  IGNORE INTO `t` VALUES (999,1,'x');\n"},
	} {
		in := tableDump(c.create, c.data, true, 12)
		r := &recorder{}
		s := newSplitter(r)
		s.splitRows, s.chunkBytes = true, 3000
		if _, err := s.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
		if s.splitTables != 0 || len(r.secs) != 3 {
			t.Errorf("%s: split into %d sections, want the table whole", name, len(r.secs))
			continue
		}
		if body := r.secs[1].body.String(); name != "insert ignore" && !strings.Contains(body, "LOCK TABLES `t` WRITE;") {
			t.Errorf("%s: LOCK TABLES was dropped from a table loaded whole", name)
		}
	}
}
