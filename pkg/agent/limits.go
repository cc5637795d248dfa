package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// DefaultSessionTimeout bounds a session whose spec.timeOut is not set.
// It is long enough for a dump of several TiB at the rates in
// docs/benchmarks.md, and short enough that a session stuck in a way the
// stall watch cannot see ends within a day, before the next nightly slot
// has waited long.
const DefaultSessionTimeout = 24 * time.Hour

// DefaultStallTimeout is how long a stream may stand still, with its
// processes alive and the dump blocked on its pipe, before it is stopped.
// A pack upload that is merely slow moves restic's I/O; a database that is
// slow to answer leaves the pipe empty: neither is a stall.
const DefaultStallTimeout = 5 * time.Minute

// lockWait is how long a backup or its retention waits for a repository
// another restic process holds (restic's --retry-lock): an exclusive
// retention takes seconds, and a hundred configs sharing one repository
// queue for it.
const lockWait = 10 * time.Minute

// DefaultLeaseDuration is the leader Lease's: an idle agent renews it every
// 30 s, its only write, and a crashed leader's replacement takes over 45 s
// after its last renewal. 100 idle agents then add about 1.5% of a core to
// the API server (12 s renewals: 2.6-3.4%, over the 2% bound of issue
// 20). A leader stopped with SIGTERM releases the Lease, so a rollout
// waits for none of it (decision 60).
const DefaultLeaseDuration = 45 * time.Second

// DefaultSessionLease is a running session's: it beats every 3 s, and a
// session silent for 15 s under a new leader is settled as an orphan.
// Heartbeats are written only while a session runs.
const DefaultSessionLease = 15 * time.Second

// sessionLimit is how long one session may run, and how the user raises
// it: its spec.timeOut (kind and name say where), else the agent's
// --session-timeout. 0 means no limit. A timeOut that is not a positive
// duration is ErrInvalid.
type sessionLimit struct {
	d     time.Duration
	raise string // "spec.timeOut 8s of BackupConfiguration nightly: raise it there"
}

func (a *Agent) sessionLimit(timeOut, kind, name string) (sessionLimit, error) {
	if timeOut != "" {
		d, err := time.ParseDuration(timeOut)
		if err != nil || d <= 0 {
			return sessionLimit{}, fmt.Errorf("%w: spec.timeOut %q of %s %s is not a positive duration such as 30m or 48h", ErrInvalid, timeOut, kind, name)
		}
		return sessionLimit{d: d, raise: fmt.Sprintf("spec.timeOut %s of %s %s; raise it there", timeOut, kind, name)}, nil
	}
	d := a.cfg.SessionTimeout
	if d <= 0 {
		return sessionLimit{}, nil
	}
	how := fmt.Sprintf("set spec.timeOut on %s %s to raise it (`kubectl stash restore ... --session-timeout 48h`)", kind, name)
	if kind == stashv1beta1.KindBackupConfiguration {
		how = fmt.Sprintf("raise it with `kubectl stash create backupconfig %s ... --session-timeout 48h` (spec.timeOut)", name)
	}
	return sessionLimit{d: d, raise: fmt.Sprintf("the default limit %s (the agent's --session-timeout), as %s %s sets no spec.timeOut; %s", d, kind, name, how)}, nil
}

// pastDeadline says err came from the session's time limit: its context
// ended, or restic was interrupted once the deadline had passed.
func pastDeadline(err error, deadline, end time.Time) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return errors.Is(err, restic.ErrInterrupted) && !deadline.IsZero() && !end.Before(deadline)
}

// tempDirHint points at the scratch volume when restic could not write
// its temporary files, the usual cause of a stalled backup.
func (a *Agent) tempDirHint(err error) string {
	low := strings.ToLower(err.Error())
	if !strings.Contains(low, "temp") && !strings.Contains(low, "read-only file system") && !strings.Contains(low, "no space left") {
		return ""
	}
	return fmt.Sprintf("; restic writes temporary packs to TMPDIR=%s on the agent's scratch volume: check that the volume is writable and has room (BackupConfiguration spec.tempDir)", TempDir(a.cfg.ScratchDir))
}
