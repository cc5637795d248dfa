package restic

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startRestServer runs the pinned rest-server on a free loopback port.
func startRestServer(t *testing.T, dir, addr string) *exec.Cmd {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "rest-server"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("rest-server not found (%v): run make tools", err)
	}
	cmd := exec.Command(bin, "--path", dir, "--listen", addr, "--no-auth")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatal("rest-server did not listen")
		}
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBackendTimeout: the backend goes away mid-upload. restic alone would
// retry for 15 minutes; with BackendTimeout the backup stops soon after
// the budget, says why, and the repository checks clean once the backend
// is back.
func TestBackendTimeout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir, addr := t.TempDir(), freeAddr(t)
	srv := startRestServer(t, dir, addr)
	r := &Repo{Binary: resticBinary(t), URL: "rest:http://" + addr + "/repo", Env: map[string]string{"RESTIC_PASSWORD": testPassword},
		BackendTimeout: 3 * time.Second}
	if _, err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	// 16 MiB now, then a pause during which the server is stopped, then more.
	script := "head -c 16777216 /dev/urandom; sleep 2; head -c 16777216 /dev/urandom"
	done := make(chan error, 1)
	go func() {
		_, err := r.Backup(ctx, BackupOptions{StdinFilename: "d.sql", Command: []string{"sh", "-c", script}})
		done <- err
	}()
	time.Sleep(1200 * time.Millisecond)
	_ = srv.Process.Kill()
	_ = srv.Wait()
	stopped := time.Now()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("the backup did not stop after the backend went away")
	}
	took := time.Since(stopped)
	t.Logf("backup stopped %s after the backend went away: %v", took.Round(100*time.Millisecond), err)
	if !errors.Is(err, ErrBackendTimeout) || !errors.Is(err, ErrBackend) {
		t.Fatalf("error = %v, want ErrBackendTimeout and ErrBackend", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error does not say what failed: %v", err)
	}
	if took > 90*time.Second {
		t.Errorf("stopping took %s with a 3s budget", took)
	}

	startRestServer(t, dir, addr)
	snaps, err := r.Snapshots(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 0 {
		t.Errorf("%d snapshots after a failed backup", len(snaps))
	}
	if err := r.Unlock(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(ctx, ""); err != nil {
		t.Fatalf("check after the outage: %v", err)
	}
	if _, err := r.Backup(ctx, BackupOptions{StdinFilename: "d.sql", Command: []string{"sh", "-c", "head -c 1048576 /dev/urandom"}}); err != nil {
		t.Fatalf("backup once the backend is back: %v", err)
	}
}
