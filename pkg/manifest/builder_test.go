package manifest

import (
	"encoding/binary"
	"encoding/hex"
	"math/bits"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
)

// bq lets fixtures write backquotes, which Go raw strings cannot hold, as ~.
var bq = strings.NewReplacer("~", "`")

// oldStyle is a dump as older mysqldump writes it: whole INSERTs on one
// line, a view's stand-in as a real table, routines and triggers whose
// bodies hold CREATE TABLE and INSERT ... VALUES, other delimiters.
var oldStyle = bq.Replace(`-- MySQL dump 10.13  Distrib 5.7.44
/*!40101 SET NAMES utf8mb4 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;

--
-- Current Database: ~a~~b~
--

CREATE DATABASE /*!32312 IF NOT EXISTS*/ ~a~~b~ /*!40100 DEFAULT CHARACTER SET utf8mb4 */;

USE ~a~~b~;
DROP TABLE IF EXISTS ~t1~;
/* a comment; with a delimiter */
CREATE TABLE ~t1~ (
  ~id~ int NOT NULL,
  ~s~ text COMMENT 'a ; in a comment -- not a comment',
  PRIMARY KEY (~id~)
) ENGINE=InnoDB;
LOCK TABLES ~t1~ WRITE;
INSERT INTO ~t1~ VALUES (1,'a ) ( , ; \' \\ \n ~x~ \"q\" \0 */ -- #'),(2,'line1
line2;'),(3,'it''s'),(4,_binary 0x00FF),(5,NULL),(6,-1.5e10);
INSERT  IGNORE INTO ~t1~ (~id~, ~s~) VALUES (7,'x\\'),(8,'\\\\') ;
REPLACE INTO ~t1~ VALUES(9,"dq \" and "" and ' (nested (paren))");
INSERT INTO ~t1~ (~i)d~) VALUES (10, POINT(1, 2)) ON DUPLICATE KEY UPDATE ~id~ = VALUES(~id~);
INSERT INTO ~t1~ SELECT * FROM ~t1~ ON DUPLICATE KEY UPDATE ~s~ = VALUES(~s~);
INSERT INTO ~t1~ SET ~id~ = 11, ~s~ = VALUES(~s~);
UNLOCK TABLES;
/*!50001 DROP VIEW IF EXISTS ~v1~*/;
/*!50001 CREATE TABLE ~v1~ (
  ~id~ tinyint NOT NULL
) ENGINE=MyISAM */;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=~root~@~%~*/ /*!50003 TRIGGER a_b.tr1 BEFORE INSERT ON ~t1~ FOR EACH ROW BEGIN
CREATE TABLE nope (x int);
INSERT INTO t1 VALUES (NEW.id, 'x;y');
END */;;
/*!50003 CREATE*/ /*!50017 DEFINER=~root~@~%~*/ /*!50003 TRIGGER ~tr 2~ AFTER INSERT ON ~t1~ FOR EACH ROW SET @x = ';;' */;;
DELIMITER ;
DELIMITER $$
CREATE DEFINER=~root~@~localhost~ PROCEDURE ~p~~1~(IN x INT)
BEGIN
  CREATE TABLE tmp_in_body (a int);
  INSERT INTO t1 VALUES (x, ');$$');
END $$
CREATE DEFINER=~root~@~localhost~ FUNCTION ~f1~(x INT) RETURNS int(11) DETERMINISTIC RETURN x+1 $$
CREATE DEFINER=root@localhost AGGREGATE FUNCTION agg(x INT) RETURNS INT BEGIN RETURN 1; END $$
DELIMITER ;
/*!50106 CREATE*/ /*!50117 DEFINER=~root~@~localhost~*/ /*!50106 EVENT ~ev1~ ON SCHEDULE EVERY 1 DAY DO INSERT INTO t1 VALUES (99,'e') */ ;
CREATE TABLE ~empty~ (id int);
CREATE SEQUENCE ~s1~ start with 1;
DO SETVAL(~s1~, 1, 0);
USE ~other~;
CREATE TABLE IF NOT EXISTS ~log~ (x int) ENGINE=CSV;
INSERT INTO ~log~ VALUES (1),(1);
USE ~a~~b~;
/*!50001 DROP TABLE IF EXISTS ~v1~*/;
/*!50001 DROP VIEW IF EXISTS ~v1~*/;
/*!50001 CREATE ALGORITHM=UNDEFINED */
/*!50013 DEFINER=~root~@~localhost~ SQL SECURITY DEFINER */
/*!50001 VIEW ~v1~ AS select ~t1~.~id~ AS ~id~ from ~t1~ */;
-- Dump completed on 2024-01-01 10:00:00
`)

var oldStyleT1 = []string{
	bq.Replace(`(1,'a ) ( , ; \' \\ \n ~x~ \"q\" \0 */ -- #')`),
	"(2,'line1\nline2;')",
	`(3,'it''s')`,
	`(4,_binary 0x00FF)`,
	`(5,NULL)`,
	`(6,-1.5e10)`,
	`(7,'x\\')`,
	`(8,'\\\\')`,
	`(9,"dq \" and "" and ' (nested (paren))")`,
	`(10, POINT(1, 2))`,
}

// digestOf computes a table's digest from its rows' text independently of
// the Builder.
func digestOf(rows ...string) string {
	var hi, lo uint64
	for _, r := range rows {
		h := xxh3.HashString128(r)
		var c uint64
		lo, c = bits.Add64(lo, h.Lo, 0)
		hi, _ = bits.Add64(hi, h.Hi, c)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return hex.EncodeToString(b[:])
}

// build feeds dump to a Builder in chunks of size n (0: at once; <0:
// random sizes from 1 to -n).
func build(dump string, n int, seed uint64) *Manifest {
	b := NewBuilder()
	p := []byte(dump)
	r := rand.New(rand.NewPCG(seed, 1))
	for len(p) > 0 {
		k := len(p)
		switch {
		case n > 0:
			k = min(n, len(p))
		case n < 0:
			k = min(1+r.IntN(-n), len(p))
		}
		// A fresh copy: the Builder must not keep references to p.
		chunk := slices.Clone(p[:k])
		if m, err := b.Write(chunk); m != k || err != nil {
			panic("short write")
		}
		clear(chunk)
		p = p[k:]
	}
	return b.Manifest()
}

// tbl is the Table of rows, computed without the Builder.
func tbl(db, name string, rows ...string) Table {
	t := Table{Database: db, Name: name, Rows: int64(len(rows)), Digest: digestOf(rows...)}
	for _, r := range rows {
		t.Bytes += int64(len(r))
	}
	return t
}

func table(m *Manifest, db, name string) *Table {
	for i := range m.Tables {
		if m.Tables[i].Database == db && m.Tables[i].Name == name {
			return &m.Tables[i]
		}
	}
	return nil
}

func TestOldStyleDump(t *testing.T) {
	m := build(oldStyle, 0, 0)
	want := &Manifest{
		Version:   1,
		Complete:  true,
		Databases: []string{"a`b", "other"},
		Tables: []Table{
			tbl("a`b", "empty"),
			tbl("a`b", "t1", oldStyleT1...),
			tbl("other", "log", "(1)", "(1)"),
		},
		Views:     []string{"a`b.v1"},
		Routines:  []string{"a`b.FUNCTION agg", "a`b.FUNCTION f1", "a`b.PROCEDURE p`1"},
		Triggers:  []string{"a_b.tr1", "a`b.tr 2"},
		Events:    []string{"a`b.ev1"},
		Sequences: []string{"a`b.s1"},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("manifest:\n%s\nwant:\n%s", js(t, m), js(t, want))
	}
}

func js(t *testing.T, m *Manifest) string {
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readFixture(t *testing.T) string {
	b, err := os.ReadFile("testdata/shop-mariadb-10.11.sql")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMariaDB1011Dump reads a real mariadb-dump 10.11 dump: rows on lines
// of their own, a view stand-in that is a CREATE VIEW, a sequence.
func TestMariaDB1011Dump(t *testing.T) {
	m := build(readFixture(t), 0, 0)
	want := &Manifest{
		Version:   1,
		Complete:  true,
		Databases: []string{"shop"},
		Tables: []Table{
			tbl("shop", "customers",
				"(1,'Zoë 🍕','a ) ( , ; \\' \\\\ \\n newline `bq` \\\"dq\\\"',0x00FF10,'{\\\"a\\\": [1, 2, \\\"x)\\\"]}',5,2)",
				"(2,NULL,'',NULL,NULL,NULL,4)",
				"(3,'It\\'s','tab\there\\r\\n\\0end\\Z','','{}',4,6)"),
			tbl("shop", "empty_t"),
			tbl("shop", "nopk", "(1,'x')", "(1,'x')", "(2,'y')"),
			tbl("shop", "we`ird", "(1,3.14,-0.00000000015,'2024-01-02 03:04:05.123456',0x15,'b')"),
		},
		Views:     []string{"shop.v 2", "shop.v1"},
		Routines:  []string{"shop.FUNCTION f1", "shop.PROCEDURE p1"},
		Triggers:  []string{"shop.trg1"},
		Events:    []string{"shop.ev1"},
		Sequences: []string{"shop.seq1"},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("manifest:\n%s\nwant:\n%s", js(t, m), js(t, want))
	}
}

// TestChunking: the manifest does not depend on how the stream is cut.
func TestChunking(t *testing.T) {
	for name, dump := range map[string]string{"old": oldStyle, "10.11": readFixture(t)} {
		whole := build(dump, 0, 0)
		for _, n := range []int{1, 2, 3, 7, 64, -5, -50} {
			for seed := range uint64(4) {
				if got := build(dump, n, seed); !reflect.DeepEqual(got, whole) {
					t.Fatalf("%s in chunks of %d (seed %d): %v", name, n, seed, Compare(whole, got, nil))
				}
			}
		}
	}
}

func FuzzChunking(f *testing.F) {
	f.Add(oldStyle, uint64(1))
	f.Add("INSERT INTO t VALUES ('a\\'b'),('c''d'),(\"e\"\"f\");", uint64(2))
	f.Fuzz(func(t *testing.T, dump string, seed uint64) {
		whole := build(dump, 0, 0)
		if got := build(dump, -9, seed); !reflect.DeepEqual(got, whole) {
			t.Fatalf("chunked: %v", Compare(whole, got, nil))
		}
	})
}

func rowsDump(rows ...string) string {
	var b strings.Builder
	b.WriteString("USE `d`;\nCREATE TABLE `t` (a int);\nCREATE TABLE `u` (a int);\nINSERT INTO `u` VALUES (1,'u');\n")
	for len(rows) > 0 {
		n := min(2, len(rows))
		b.WriteString("INSERT INTO `t` VALUES\n" + strings.Join(rows[:n], ",\n") + ";\n")
		rows = rows[n:]
	}
	return b.String()
}

func TestRowOrderDoesNotMatter(t *testing.T) {
	rows := []string{"(1,'a')", "(2,'b')", "(2,'b')", "(3,'c\\')')", "(4,0xFF)"}
	want := build(rowsDump(rows...), 0, 0)
	r := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		if got := build(rowsDump(rows...), 0, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("order %v: %v", rows, Compare(want, got, nil))
		}
	}
}

func TestDuplicateRowsCount(t *testing.T) {
	one := table(build(rowsDump("(1)"), 0, 0), "d", "t")
	two := table(build(rowsDump("(1)", "(1)"), 0, 0), "d", "t")
	none := table(build(rowsDump(), 0, 0), "d", "t")
	if one.Digest == two.Digest || two.Digest == none.Digest {
		t.Errorf("digests of one, two and no (1) rows: %s %s %s", one.Digest, two.Digest, none.Digest)
	}
	if none.Rows != 0 || none.Digest != strings.Repeat("0", 32) {
		t.Errorf("empty table: %+v", none)
	}
}

func TestChangedByteChangesOneTable(t *testing.T) {
	dump := rowsDump("(1,'abc')", "(2,'def')", "(3,'ghi')")
	want := build(dump, 0, 0)
	got := build(strings.Replace(dump, "'def'", "'dEf'", 1), 0, 0)
	if d := Compare(want, got, nil); !slices.Equal(d, []string{"table d.t: data differs (digest)"}) {
		t.Errorf("Compare = %q", d)
	}
	if table(got, "d", "u").Digest != table(want, "d", "u").Digest {
		t.Error("digest of d.u changed")
	}
}

func TestIncomplete(t *testing.T) {
	dump := readFixture(t)
	full := build(dump, 0, 0)
	cut := build(dump[:strings.Index(dump, "(3,'It")+10], 0, 0)
	if !full.Complete || cut.Complete {
		t.Fatalf("Complete: full %v, cut %v", full.Complete, cut.Complete)
	}
	d := Compare(full, cut, nil)
	if len(d) == 0 || !strings.Contains(d[0], "incomplete") || !slices.Contains(d, "table shop.customers: 2 rows, want 3") {
		t.Errorf("Compare = %q", d)
	}
}

func TestCompare(t *testing.T) {
	want := &Manifest{
		Version: 1, Complete: true,
		Databases: []string{"mysql", "shop"},
		Tables: []Table{
			{Database: "mysql", Name: "innodb_table_stats", Rows: 5, Digest: "1"},
			{Database: "shop", Name: "audit", Rows: 1, Digest: "a"},
			{Database: "shop", Name: "orders", Rows: 121, Digest: "b"},
			{Database: "shop", Name: "items", Rows: 7, Bytes: 70, Digest: "c"},
			{Database: "shop", Name: "same", Rows: 7, Bytes: 70, Digest: "d"},
		},
		Views:    []string{"shop.v1", "shop.v2"},
		Routines: []string{"shop.PROCEDURE p"},
		Triggers: []string{"shop.tr"},
		Events:   []string{"shop.ev"},
	}
	got := &Manifest{
		Version: 1, Complete: true,
		Databases: []string{"mysql", "shop", "x"},
		Tables: []Table{
			{Database: "mysql", Name: "innodb_table_stats", Rows: 9, Digest: "2"},
			{Database: "shop", Name: "orders", Rows: 120, Digest: "b"},
			{Database: "shop", Name: "items", Rows: 7, Bytes: 71, Digest: "C"},
			{Database: "shop", Name: "same", Rows: 7, Bytes: 70, Digest: "d"},
			{Database: "x", Name: "y"},
		},
		Views:    []string{"shop.v2"},
		Triggers: []string{"shop.tr"},
		Events:   []string{"shop.ev", "shop.ev2"},
	}
	wantDiff := []string{
		"extra database x",
		"table shop.audit missing",
		"table shop.orders: 120 rows, want 121",
		"table shop.items: data differs (digest; 71 bytes, want 70)",
		"extra table x.y",
		"view shop.v1 missing",
		"routine shop.PROCEDURE p missing",
		"extra event shop.ev2",
	}
	if d := Compare(want, got, DefaultIgnore); !slices.Equal(d, wantDiff) {
		t.Errorf("Compare =\n%s\nwant\n%s", strings.Join(d, "\n"), strings.Join(wantDiff, "\n"))
	}
	if d := Compare(want, got, nil); len(d) != len(wantDiff)+1 || d[1] != "table mysql.innodb_table_stats: 9 rows, want 5" {
		t.Errorf("without ignore: %q", d)
	}
	if d := Compare(want, want, nil); len(d) != 0 {
		t.Errorf("Compare(want, want) = %q", d)
	}
}

func TestMarshalParse(t *testing.T) {
	m := build(oldStyle, 0, 0)
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("round trip: %v", Compare(m, back, nil))
	}
	for _, s := range []string{`{"version": 2, "tables": []}`, `{"tables": []}`} {
		if _, err := Parse([]byte(s)); err == nil || !strings.Contains(err.Error(), "version") {
			t.Errorf("Parse(%s) = %v, want a version error", s, err)
		}
	}
	if _, err := Parse([]byte("{")); err == nil {
		t.Error("Parse accepted bad JSON")
	}
}

func TestDefaultIgnore(t *testing.T) {
	for _, tc := range []struct {
		db, table string
		want      bool
	}{
		{"mysql", "innodb_index_stats", true},
		{"mysql", "gtid_slave_pos", true},
		{"mysql", "transaction_registry", true},
		{"mysql", "proc", true},
		{"mysql", "global_priv", false},
		{"shop", "innodb_index_stats", false},
	} {
		if got := DefaultIgnore(tc.db, tc.table); got != tc.want {
			t.Errorf("DefaultIgnore(%s, %s) = %v", tc.db, tc.table, got)
		}
	}
}
