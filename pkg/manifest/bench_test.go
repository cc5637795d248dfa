package manifest

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// synthDump is a ~size byte dump shaped like mariadb-dump 10.11 output:
// extended INSERTs of ~1 MiB with a row per line; rows of ints, decimals,
// dates, quoted strings with escapes, JSON and hex blobs.
func synthDump(size int) []byte {
	r := rand.New(rand.NewPCG(7, 7))
	var b bytes.Buffer
	b.Grow(size + 2<<20)
	words := []string{"alpha", "beta", "O\\'Brien", "line\\nbreak", "tab\\there", "a (paren)", "semi;colon", "back\\\\slash", "Zoë", "🍕", "\\\"quoted\\\""}
	blob := make([]byte, 512)
	for t := 0; b.Len() < size; t++ {
		fmt.Fprintf(&b, "--\n-- Table structure for table `t%d`\n--\n\nDROP TABLE IF EXISTS `t%d`;\nCREATE TABLE `t%d` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n\nLOCK TABLES `t%d` WRITE;\n", t, t, t, t)
		for s := 0; s < 8 && b.Len() < size; s++ {
			fmt.Fprintf(&b, "INSERT INTO `t%d` VALUES\n", t)
			start := b.Len()
			for n := 0; b.Len()-start < 1<<20; n++ {
				if n > 0 {
					b.WriteString(",\n")
				}
				fmt.Fprintf(&b, "(%d,%d.%02d,'2024-%02d-%02d 12:34:56','", s<<20|n, r.IntN(100000), r.IntN(100), 1+r.IntN(12), 1+r.IntN(28))
				for w := r.IntN(12); w >= 0; w-- {
					b.WriteString(words[r.IntN(len(words))])
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "','{\\\"k\\\": %d, \\\"v\\\": [1, 2, 3]}',", r.IntN(1000))
				if r.IntN(3) == 0 {
					b.WriteString("NULL")
				} else {
					k := 8 + r.IntN(len(blob)-8)
					for i := range blob[:k] {
						blob[i] = byte(r.Uint32())
					}
					b.WriteString("0x")
					b.WriteString(hex.EncodeToString(blob[:k]))
				}
				b.WriteString(")")
			}
			b.WriteString(";\n")
		}
		b.WriteString("UNLOCK TABLES;\n")
	}
	b.WriteString("-- Dump completed on 2024-01-01 10:00:00\n")
	return b.Bytes()
}

var benchDump = sync.OnceValue(func() []byte { return synthDump(64 << 20) })

// BenchmarkBuilder reports the Builder's throughput on one core, fed in
// 64 KiB writes as io.Copy from a pipe would.
func BenchmarkBuilder(b *testing.B) {
	dump := benchDump()
	b.SetBytes(int64(len(dump)))
	b.ResetTimer()
	for b.Loop() {
		bl := NewBuilder()
		for p := dump; len(p) > 0; {
			n := min(64<<10, len(p))
			bl.Write(p[:n])
			p = p[n:]
		}
		if m := bl.Manifest(); !m.Complete || len(m.Tables) == 0 {
			b.Fatal("bad manifest")
		}
	}
}

// TestSynthDumpChunking checks the benchmark's dump (smaller) reads the
// same whole and in odd writes, and counts every row.
func TestSynthDumpChunking(t *testing.T) {
	dump := string(synthDump(3 << 20))
	whole := build(dump, 0, 0)
	var rows int64
	for _, tb := range whole.Tables {
		rows += tb.Rows
	}
	if want := int64(strings.Count(dump, "),\n") + strings.Count(dump, ");\n")); rows != want || rows < 1000 {
		t.Errorf("%d rows, want %d", rows, want)
	}
	if got := build(dump, -70000, 3); !equalManifest(got, whole) {
		t.Errorf("chunked: %v", Compare(whole, got, nil))
	}
}

func equalManifest(a, b *Manifest) bool {
	ja, _ := a.Marshal()
	jb, _ := b.Marshal()
	return bytes.Equal(ja, jb)
}
