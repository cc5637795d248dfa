package agent

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync/atomic"

	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// errPrefetchRefused ends a prefetched dump that read the wrong snapshot.
var errPrefetchRefused = errors.New("prefetched dump not used")

// prefetch is a restic dump of a whole snapshot, as tar, started while the
// listing that confirms the snapshot and names its file still runs: both
// restic runs derive the key at once. Until use opens it, the stream waits
// in a pipe: restic opens the repository, loads the index and blocks, and
// nothing reaches the database.
type prefetch struct {
	snapshot string
	cancel   context.CancelFunc
	pr       *io.PipeReader
	done     chan error
	result   error
	finished bool
	wrote    atomic.Bool
}

func startPrefetch(ctx context.Context, rr *restic.Repo, snapshot string) *prefetch {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	p := &prefetch{snapshot: snapshot, cancel: cancel, pr: pr, done: make(chan error, 1)}
	go func() {
		err := rr.DumpTar(ctx, snapshot, "/", pw)
		pw.CloseWithError(err) // nil: the reader sees EOF
		p.done <- err
	}()
	return p
}

// matches says the prefetched stream reads the snapshot the listing picked.
func (p *prefetch) matches(snapshotID string) bool {
	return p != nil && strings.HasPrefix(snapshotID, p.snapshot)
}

// use streams file of the snapshot into w. wrote says some of it reached
// w; when it did not, an error leaves nothing behind, and the caller can
// dump the plain way.
func (p *prefetch) use(file string, w io.Writer) (wrote bool, err error) {
	extractErr := p.extract(strings.TrimPrefix(path.Clean(file), "/"), w)
	// A failed extraction stops restic (its stdout closes); a finished one
	// has read the archive to its end, and restic exits on its own.
	p.pr.CloseWithError(cmpErr(extractErr, errPrefetchRefused))
	dumpErr := p.wait()
	if dumpErr != nil {
		return p.wrote.Load(), dumpErr
	}
	return p.wrote.Load(), extractErr
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// extract copies the archive's entry name into w and reads the rest of the
// archive, so that restic finishes its work.
func (p *prefetch) extract(name string, w io.Writer) error {
	tr := tar.NewReader(p.pr)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the snapshot's archive: %w", err)
		}
		if found || h.Typeflag != tar.TypeReg || h.Name != name {
			continue // tar.Reader skips the entry's data
		}
		found = true
		if _, err := io.Copy(&markWriter{w: w, wrote: &p.wrote}, tr); err != nil {
			return err
		}
	}
	// Read what may follow the archive's end, so restic's last write lands.
	if _, err := io.Copy(io.Discard, p.pr); err != nil {
		return fmt.Errorf("read the snapshot's archive: %w", err)
	}
	if !found {
		return fmt.Errorf("%w: path %q not found in snapshot", restic.ErrPathNotFound, "/"+name)
	}
	return nil
}

// wait returns the dump's result once it has finished.
func (p *prefetch) wait() error {
	if !p.finished {
		p.result, p.finished = <-p.done, true
	}
	return p.result
}

// stop ends a dump that is not wanted (or no longer), and waits for its
// restic to exit. It is safe to call more than once, and on nil.
func (p *prefetch) stop() {
	if p == nil {
		return
	}
	p.cancel()
	p.pr.CloseWithError(errPrefetchRefused)
	_ = p.wait()
}

// markWriter notes that a write reached w.
type markWriter struct {
	w     io.Writer
	wrote *atomic.Bool
}

func (m *markWriter) Write(b []byte) (int, error) {
	m.wrote.Store(true)
	return m.w.Write(b)
}
