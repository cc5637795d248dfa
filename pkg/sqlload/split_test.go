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
	body bytes.Buffer
}

type recorder struct{ secs []*recSection }

func (r *recorder) begin(k kind, use, _ string) error {
	r.secs = append(r.secs, &recSection{kind: k, use: use})
	return nil
}

func (r *recorder) decide(k kind) { r.secs[len(r.secs)-1].kind = k }

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
