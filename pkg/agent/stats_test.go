package agent

import (
	"errors"
	"testing"
	"time"
)

func TestNextStats(t *testing.T) {
	now := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	a := &Agent{clock: func() time.Time { return now }, repos: map[string]repoStats{}}
	reads := 0
	read := func(size uint64, count int) func() (uint64, int, error) {
		return func() (uint64, int, error) { reads++; return size, count, nil }
	}
	check := func(st repoStats, err error, size uint64, count, wantReads int) {
		t.Helper()
		if err != nil || st.size != size || st.count != count || reads != wantReads {
			t.Fatalf("got size %d count %d reads %d err %v; want %d %d %d", st.size, st.count, reads, err, size, count, wantReads)
		}
	}
	st, err := a.nextStats("r", 10, false, read(100, 3)) // never read: read
	check(st, err, 100, 3, 1)
	now = now.Add(10 * time.Second)
	st, err = a.nextStats("r", 10, false, read(999, 99)) // fresh enough: counted forward
	check(st, err, 110, 4, 1)
	st, err = a.nextStats("r", 10, true, read(90, 2)) // retention removed snapshots: read
	check(st, err, 90, 2, 2)
	now = now.Add(statsEvery)
	st, err = a.nextStats("r", 10, false, read(200, 5)) // stale: read
	check(st, err, 200, 5, 3)
	boom := errors.New("boom")
	if _, err := a.nextStats("other", 1, false, func() (uint64, int, error) { return 0, 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("error = %v", err)
	}
	if _, ok := a.repos["other"]; ok {
		t.Fatal("a failed read was remembered")
	}
}
