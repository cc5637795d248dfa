package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A session queued behind another's repository init gives up when its
// context ends instead of holding the agent's shutdown.
func TestLockRepoLocalHonoursContext(t *testing.T) {
	a := &Agent{repoLocks: map[string]chan struct{}{}}
	unlock, err := a.lockRepoLocal(context.Background(), "s3:one")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.lockRepoLocal(ctx, "s3:one"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held repository: err = %v, want DeadlineExceeded", err)
	}
	other, err := a.lockRepoLocal(context.Background(), "s3:two")
	if err != nil {
		t.Fatalf("another repository's lock waited on the first: %v", err)
	}
	other()
	got := make(chan error, 1)
	go func() {
		u, err := a.lockRepoLocal(context.Background(), "s3:one")
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("lock taken while held (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by unlock")
	}
}
