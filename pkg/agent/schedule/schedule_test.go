package schedule

import (
	"context"
	"testing"
	"time"
)

// A slot that passes while a job is being added is not an invalid
// schedule: the job starts at the next aligned slot. The clock here lags,
// so every computed start is already in the past.
func TestSetAcceptsAStartThatJustPassed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fired := make(chan time.Time, 4)
	lag := func() time.Time { return time.Now().Add(-3 * time.Second) }
	sc, err := New(ctx, func(_ context.Context, _ string, slot time.Time) { fired <- slot }, lag)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sc.Stop() }()
	if _, err := sc.Set("db", "@every 1s"); err != nil {
		t.Fatalf("Set with a start in the past: %v", err)
	}
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("the job never fired")
	}
}
