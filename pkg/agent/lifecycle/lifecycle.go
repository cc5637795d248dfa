// Package lifecycle is what every kind of session shares: the claim under
// optimistic concurrency, the heartbeat, the final write made only under
// the claim its writer expects, the timing of orphans, and status writes
// that outlast a short API server outage. BackupSession and RestoreSession
// each plug in through a Kind; the jobs themselves never see it.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
)

// Phase is a session's phase as the lifecycle sees it.
type Phase int

const (
	Pending Phase = iota // not claimed yet ("" or Pending)
	Running
	Done // Succeeded, Failed, Skipped, Invalid...
)

// State is what the lifecycle reads of a session.
type State struct {
	Phase     Phase
	ClaimedBy string
	// Beat is the last sign of life of the agent running it: its
	// heartbeat, else its start (agents that wrote no heartbeat).
	Beat time.Time
}

// Client reads and writes one kind's objects; *client.Resource is one.
type Client[T runtime.Object] interface {
	Get(ctx context.Context, name string) (T, error)
	UpdateStatus(ctx context.Context, obj T) (T, error)
}

// Kind adapts one session kind to the lifecycle.
type Kind[T runtime.Object] struct {
	// Name is the kind's name, for logs and errors.
	Name   string
	Client Client[T]
	State  func(T) State
	// Claim marks obj Running under agent by at now; Beat touches its
	// heartbeat. Both change only obj's status.
	Claim func(obj T, by string, now time.Time)
	Beat  func(obj T, now time.Time)
}

// Lifecycle runs the shared steps of one kind for one agent.
type Lifecycle[T runtime.Object] struct {
	Kind     Kind[T]
	Identity string
	Clock    func() time.Time
	// Lease is the agent's lease duration: a heartbeat every fifth of it,
	// and a session whose heartbeat is still for a whole one is orphaned.
	Lease time.Duration
	Log   *slog.Logger
}

// ErrSettled: a session's final status was not written because it is no
// longer Running under the expected claim; another agent settled it first.
var ErrSettled = errors.New("the session was already settled")

// Claim moves a Pending session to Running with a status update carrying
// its resourceVersion. ok is false when another agent got there first (a
// Conflict) or the session is gone.
func (l *Lifecycle[T]) Claim(ctx context.Context, obj T) (claimed T, ok bool, err error) {
	c := obj.DeepCopyObject().(T)
	l.Kind.Claim(c, l.Identity, l.Clock())
	out, err := l.Kind.Client.UpdateStatus(ctx, c)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return claimed, false, nil
	}
	if err != nil {
		return claimed, false, fmt.Errorf("claim %s: %w", l.Kind.Name, err)
	}
	if l.Kind.State(out).Beat.IsZero() {
		// The API server dropped the field: its CRD is older than this
		// agent, and a new leader would take the session for orphaned.
		l.Log.Warn("the CRD has no status.heartbeatTime; run `kubectl stash install` to update the CRDs", "kind", l.Kind.Name)
	}
	return out, true, nil
}

// HeartbeatEvery is how often a running session shows its agent is alive:
// a live agent can miss four beats (an API hiccup) and keep its session.
func (l *Lifecycle[T]) HeartbeatEvery() time.Duration { return l.Lease / 5 }

// Heartbeat touches a running session's heartbeat until ctx ends or the
// session is no longer Running under this agent. A failed write (an API
// outage) is tried again at the next beat.
func (l *Lifecycle[T]) Heartbeat(ctx context.Context, name string) {
	tick := time.NewTicker(l.HeartbeatEvery())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		bctx, cancel := context.WithTimeout(ctx, l.HeartbeatEvery())
		err := UpdateStatusIf(bctx, l.Kind.Client, name, func(o T) error {
			if st := l.Kind.State(o); st.Phase != Running || st.ClaimedBy != l.Identity {
				return ErrSettled
			}
			l.Kind.Beat(o, l.Clock())
			return nil
		})
		cancel()
		if errors.Is(err, ErrSettled) || apierrors.IsNotFound(err) {
			return
		}
	}
}

// Finish writes a session's outcome while it is still Running under this
// agent's claim, through API outages of up to FinalWriteTimeout. An agent
// that lost its Lease can still be running a session that the new leader
// settles as orphaned: whichever writes first wins, and the other hears
// ErrSettled and neither retries nor reports.
func (l *Lifecycle[T]) Finish(ctx context.Context, name string, mutate func(T)) error {
	return l.Settle(ctx, name, func(o T) bool { return l.Kind.State(o).ClaimedBy == l.Identity }, mutate)
}

// Settle writes a session's outcome while it is Running and still passes
// the check; ErrSettled otherwise.
func (l *Lifecycle[T]) Settle(ctx context.Context, name string, still func(T) bool, mutate func(T)) error {
	return DurableIf(ctx, l.Kind.Client, name, func(o T) error {
		if st := l.Kind.State(o); st.Phase != Running || !still(o) {
			return fmt.Errorf("%w: %s %s is claimed by %q and no longer Running under the expected claim", ErrSettled, l.Kind.Name, name, st.ClaimedBy)
		}
		mutate(o)
		return nil
	})
}

// Sightings time other agents' heartbeats on this agent's clock (clocks
// of two nodes need not agree): when each was first seen unchanged.
type Sightings struct {
	seen map[string]sighting
}

type sighting struct{ beat, at time.Time }

// NewSightings is an empty record, one per leadership term.
func NewSightings() *Sightings { return &Sightings{seen: map[string]sighting{}} }

// Silent records a session's heartbeat as seen at now and returns how much
// longer it must stay unchanged to have been silent for lease; 0 when it
// has been (the sighting is then forgotten).
func (s *Sightings) Silent(key string, beat, now time.Time, lease time.Duration) time.Duration {
	last, ok := s.seen[key]
	if !ok || !last.beat.Equal(beat) {
		s.seen[key] = sighting{beat: beat, at: now}
		return lease
	}
	if left := last.at.Add(lease).Sub(now); left > 0 {
		return left
	}
	delete(s.seen, key)
	return 0
}

// Timing reports whether key's heartbeat is being timed.
func (s *Sightings) Timing(key string) bool { _, ok := s.seen[key]; return ok }

// Keep forgets every sighting whose key keep rejects (sessions that are
// gone or no longer Running).
func (s *Sightings) Keep(keep func(key string) bool) {
	for k := range s.seen {
		if !keep(k) {
			delete(s.seen, k)
		}
	}
}
