package testenv

import (
	"context"
	"os"
	"path/filepath"
	"time"
)

// StartRestServer starts a rest-server of the caller's own, for fault
// tests that stop it; the caller stops it.
func (e *Env) StartRestServer(ctx context.Context) (*RestServer, error) {
	dir, err := os.MkdirTemp(e.Dir, "rest-")
	if err != nil {
		return nil, err
	}
	return startRestServer(ctx, dir, e.BinDir, false)
}

// Restart starts a stopped rest-server again, with the same address and data.
func (r *RestServer) Restart(ctx context.Context) error {
	r.Process.Stop(5 * time.Second)
	args := r.Process.cmd.Args[1:]
	p, err := start(filepath.Dir(r.Process.LogPath), "rest-server", r.Process.cmd.Path, args, nil, false)
	if err != nil {
		return err
	}
	r.Process = p
	return p.waitReady(ctx, 30*time.Second, tcpReady(r.URL[len("http://"):]))
}
