package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// s3Bucket holds the S3 repositories.
const s3Bucket = "bench-repos"

// repoLoc is a restic repository as restic run by the benchmark sees it.
type repoLoc struct {
	URL string   // restic's repository location
	Dir string   // its directory on this machine, wiped for a fresh repository
	Env []string // backend credentials
}

func (b *bench) localRepo(name string) repoLoc {
	dir := filepath.Join(b.work, "repos", name)
	return repoLoc{URL: dir, Dir: dir}
}

func (b *bench) s3Repo(prefix string) repoLoc {
	s := b.env.S3
	return repoLoc{
		URL: "s3:" + s.Endpoint + "/" + s3Bucket + "/" + prefix,
		Dir: filepath.Join(s.Dir, s3Bucket, prefix),
		Env: []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey},
	}
}

func (b *bench) resticEnv(l repoLoc) []string {
	return append([]string{"RESTIC_PASSWORD=" + b.repoPass}, l.Env...)
}

// resticRepo is the repository for pkg/restic, the agent's own runner.
func (b *bench) resticRepo(l repoLoc) *restic.Repo {
	env := map[string]string{"RESTIC_PASSWORD": b.repoPass}
	for _, kv := range l.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return &restic.Repo{Binary: b.restic, URL: l.URL, Env: env}
}

// freshRepo removes the repository and initialises an empty one (not timed).
func (b *bench) freshRepo(ctx context.Context, l repoLoc) error {
	if err := os.RemoveAll(l.Dir); err != nil {
		return fmt.Errorf("remove repository %s: %w", l.Dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(l.Dir), 0o700); err != nil {
		return err
	}
	_, _, err := b.run(ctx, 2*time.Minute, nil, b.resticEnv(l), b.restic, "-r", l.URL, "--no-cache", "init")
	return err
}

// snapshot reads one snapshot (an ID or "latest") with its summary.
func (b *bench) snapshot(ctx context.Context, l repoLoc, id string) (restic.Snapshot, error) {
	out, _, err := b.run(ctx, 5*time.Minute, nil, b.resticEnv(l), b.restic, "-r", l.URL, "--no-cache", "snapshots", "--json", id)
	if err != nil {
		return restic.Snapshot{}, err
	}
	var snaps []restic.Snapshot
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		return restic.Snapshot{}, fmt.Errorf("restic snapshots --json %s: %w", id, err)
	}
	if len(snaps) != 1 || snaps[0].Summary == nil {
		return restic.Snapshot{}, fmt.Errorf("restic snapshots %s in %s: %d snapshots, want one with a summary", id, l.URL, len(snaps))
	}
	return snaps[0], nil
}

// dirSize is the bytes of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return n, nil
}
