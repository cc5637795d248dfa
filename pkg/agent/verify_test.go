package agent

import (
	"bytes"
	"testing"
)

// Only whole lines equal to the statement go; the rest passes untouched,
// whatever the chunking.
func TestLineDropperDropsOnlyTheWholeLine(t *testing.T) {
	in := "USE `mysql`;\n" + flushPrivileges + "\n" + flushPrivileges + " -- not alone\n/*! FLUSH*/;\n" + flushPrivileges + "\nlast line no newline"
	want := "USE `mysql`;\n" + flushPrivileges + " -- not alone\n/*! FLUSH*/;\nlast line no newline"
	for _, size := range []int{1, 2, 5, 13, len(in)} {
		var out bytes.Buffer
		d := newLineDropper(&out, flushPrivileges)
		for i := 0; i < len(in); i += size {
			if _, err := d.Write([]byte(in[i:min(i+size, len(in))])); err != nil {
				t.Fatal(err)
			}
		}
		got := out.String()
		if got != want {
			t.Errorf("chunk %d:\n%q\nwant\n%q", size, got, want)
		}
	}
}
