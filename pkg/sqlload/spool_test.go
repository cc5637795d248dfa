package sqlload

import (
	"slices"
	"testing"
)

// A split table's parts wait for what must have run before them: every
// chunk for the head, the chunks after the first for the first too (the
// table is empty until it ran), the tail for every chunk.
func TestSplitPartsWaitForTheFirstChunk(t *testing.T) {
	s := newSpool(t.TempDir(), 1<<20, nil)
	t.Cleanup(s.closeAll)
	if err := s.begin(kindTable, "USE `shop`;", "orders`"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []part{partChunk, partChunk, partChunk, partTail} {
		if err := s.part(p); err != nil {
			t.Fatal(err)
		}
	}
	head, c1, c2, c3, tail := s.all[0], s.all[1], s.all[2], s.all[3], s.all[4]
	for _, c := range []struct {
		name        string
		sec         *section
		after, want []*section
	}{
		{"first chunk", c1, c1.after, []*section{head}},
		{"second chunk", c2, c2.after, []*section{head, c1}},
		{"third chunk", c3, c3.after, []*section{head, c1}},
		{"tail", tail, tail.after, []*section{head, c1, c2, c3}},
	} {
		if !slices.Equal(c.after, c.want) {
			t.Errorf("%s waits for %d sections %v, want %v", c.name, len(c.after), c.after, c.want)
		}
	}
}
