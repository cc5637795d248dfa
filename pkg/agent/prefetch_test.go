package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// prefetchRepo backs up data as /db.sql into a new local repository with
// the pinned restic and returns the repository and the snapshot's ID.
func prefetchRepo(t *testing.T, ctx context.Context, data []byte) (*restic.Repo, string) {
	t.Helper()
	bin := filepath.Join(testenv.RepoRoot(), "bin", "restic")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("restic not found (%v): run make tools", err)
	}
	src := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &restic.Repo{Binary: bin, URL: filepath.Join(t.TempDir(), "repo"), Env: map[string]string{"RESTIC_PASSWORD": "prefetch-test-pass"}}
	if _, err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	sum, err := r.Backup(ctx, restic.BackupOptions{StdinFilename: "db.sql", Command: []string{"cat", src}})
	if err != nil {
		t.Fatal(err)
	}
	return r, sum.SnapshotID
}

// failAfter accepts n bytes, then fails.
type failAfter struct {
	n   int
	got int
	err error
}

func (f *failAfter) Write(b []byte) (int, error) {
	if f.got+len(b) > f.n {
		return 0, f.err
	}
	f.got += len(b)
	return len(b), nil
}

func TestPrefetch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	data := make([]byte, 3<<20+123) // more than any pipe holds
	_, _ = rand.Read(data)
	r, id := prefetchRepo(t, ctx, data)

	t.Run("streams the confirmed file", func(t *testing.T) {
		p := startPrefetch(ctx, r, id[:8])
		defer p.stop()
		time.Sleep(300 * time.Millisecond) // restic runs, and waits
		if !p.matches(id) || p.matches("ffffffff"+id[8:]) {
			t.Fatal("matches() does not follow the snapshot ID")
		}
		var got bytes.Buffer
		wrote, err := p.use("/db.sql", &got)
		if err != nil || !wrote {
			t.Fatalf("use: wrote %v, %v", wrote, err)
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("got %d bytes that differ from the %d backed up", got.Len(), len(data))
		}
	})

	t.Run("a file the snapshot lacks writes nothing", func(t *testing.T) {
		p := startPrefetch(ctx, r, id)
		defer p.stop()
		var got bytes.Buffer
		wrote, err := p.use("/other.sql", &got)
		if !errors.Is(err, restic.ErrPathNotFound) || wrote || got.Len() != 0 {
			t.Fatalf("use of a missing file: wrote %v (%d bytes), %v; want nothing and ErrPathNotFound", wrote, got.Len(), err)
		}
	})

	t.Run("a failing writer stops restic with its error", func(t *testing.T) {
		p := startPrefetch(ctx, r, id)
		defer p.stop()
		boom := errors.New("mysql went away")
		start := time.Now()
		wrote, err := p.use("/db.sql", &failAfter{n: 1 << 20, err: boom})
		if !errors.Is(err, boom) || !wrote {
			t.Fatalf("use into a failing writer: wrote %v, %v; want the writer's error", wrote, err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("stopping took %s", d)
		}
	})

	t.Run("stop before use ends restic", func(t *testing.T) {
		p := startPrefetch(ctx, r, id)
		time.Sleep(200 * time.Millisecond)
		done := make(chan struct{})
		go func() { p.stop(); p.stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("stop did not end the prefetched dump")
		}
	})

	t.Run("an unknown snapshot fails without writing", func(t *testing.T) {
		p := startPrefetch(ctx, r, "deadbeef")
		defer p.stop()
		var got bytes.Buffer
		wrote, err := p.use("/db.sql", &got)
		if err == nil || wrote || got.Len() != 0 {
			t.Fatalf("use of an unknown snapshot: wrote %v, %v", wrote, err)
		}
		if !errors.Is(err, restic.ErrSnapshotNotFound) {
			t.Errorf("error = %v, want ErrSnapshotNotFound", fmt.Sprint(err))
		}
	})
}
