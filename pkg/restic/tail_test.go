package restic

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestTail: the last bytes of a large file come back from its last blobs
// alone, equal to the file's end, for a file at the root and in a folder.
func TestTail(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := &Repo{Binary: resticBinary(t), URL: t.TempDir(), Env: map[string]string{"RESTIC_PASSWORD": testPassword}, CacheDir: t.TempDir()}
	if _, err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	// 12 MiB that does not compress or deduplicate: several blobs.
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 12<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	data = append(data, "\n-- stash-manifest: {\"end\":true}\n"...)
	sum, err := r.Backup(ctx, BackupOptions{Host: "h", StdinFilename: "db.sql", Stdin: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	tail, err := r.Tail(ctx, sum.SnapshotID, "/db.sql", 100, func(b []byte) bool { calls++; return bytes.Contains(b, []byte("\n-- stash-manifest: ")) })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(data, tail) || len(tail) < 100 || len(tail) >= len(data) || calls != 1 {
		t.Errorf("tail of %d bytes after %d blob(s); the file's end: %v", len(tail), calls, bytes.HasSuffix(data, tail))
	}
	whole, err := r.Tail(ctx, sum.SnapshotID, "db.sql", len(data)+1, nil)
	if err != nil || !bytes.Equal(whole, data) {
		t.Errorf("asking for more than the file gives the file: %d bytes of %d, %v", len(whole), len(data), err)
	}
	if _, err := r.Tail(ctx, sum.SnapshotID, "other.sql", 1, nil); err == nil {
		t.Error("a file the snapshot does not hold gave no error")
	}
}
