package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// A Running session of another agent is orphaned only after its heartbeat
// stayed the same for a lease duration on this agent's clock, whatever
// the heartbeat's own timestamp says.
func TestSightingsSilent(t *testing.T) {
	lease := 15 * time.Second
	now := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	old := now.Add(-time.Hour) // the claimer's clock, or a beat from before an outage
	s := NewSightings()
	step := func(beat time.Time, d time.Duration, want time.Duration) {
		t.Helper()
		now = now.Add(d)
		if got := s.Silent("s", beat, now, lease); got != want {
			t.Fatalf("at +%s: wait %s, want %s", d, got, want)
		}
	}
	step(old, 0, lease)                              // first seen: a full lease to go, however old the beat
	step(old, 10*time.Second, 5*time.Second)         // unchanged: the rest of it
	step(old.Add(time.Second), 4*time.Second, lease) // it moved: alive, start again
	step(old.Add(time.Second), 14*time.Second, time.Second)
	if !s.Timing("s") {
		t.Fatal("a session being timed is not reported as timed")
	}
	step(old.Add(time.Second), time.Second, 0) // silent for a lease: orphaned
	if s.Timing("s") {
		t.Fatal("an orphaned session's sighting was kept")
	}
	s.Silent("a", old, now, lease)
	s.Silent("b", old, now, lease)
	s.Keep(func(k string) bool { return k == "b" })
	if s.Timing("a") || !s.Timing("b") {
		t.Fatal("Keep did not forget exactly the rejected sightings")
	}
}

// store is an API server's optimistic concurrency for one kind, in memory:
// the transitions are what is under test here, not the transport (the e2e
// tests run them against kube-apiserver).
type store struct {
	mu   sync.Mutex
	objs map[string]*stashv1beta1.RestoreSession
	rv   int
	fail error // returned by the next UpdateStatus, once
}

var gr = schema.GroupResource{Group: "stash.appscode.com", Resource: "restoresessions"}

func (s *store) Get(_ context.Context, name string) (*stashv1beta1.RestoreSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[name]
	if !ok {
		return nil, apierrors.NewNotFound(gr, name)
	}
	return o.DeepCopy(), nil
}

func (s *store) UpdateStatus(_ context.Context, o *stashv1beta1.RestoreSession) (*stashv1beta1.RestoreSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail; err != nil {
		s.fail = nil
		return nil, err
	}
	cur, ok := s.objs[o.Name]
	if !ok {
		return nil, apierrors.NewNotFound(gr, o.Name)
	}
	if cur.ResourceVersion != o.ResourceVersion {
		return nil, apierrors.NewConflict(gr, o.Name, errors.New("the object has been modified"))
	}
	s.rv++
	c := o.DeepCopy()
	c.ResourceVersion = string(rune('a' + s.rv))
	s.objs[o.Name] = c
	return c.DeepCopy(), nil
}

func restoreKind(c Client[*stashv1beta1.RestoreSession]) Kind[*stashv1beta1.RestoreSession] {
	return Kind[*stashv1beta1.RestoreSession]{
		Name: "RestoreSession", Client: c,
		State: func(s *stashv1beta1.RestoreSession) State {
			st := State{ClaimedBy: s.Status.ClaimedBy}
			switch s.Status.Phase {
			case "", stashv1beta1.RestorePending:
				st.Phase = Pending
			case stashv1beta1.RestoreRunning:
				st.Phase = Running
			default:
				st.Phase = Done
			}
			if s.Status.HeartbeatTime != nil {
				st.Beat = s.Status.HeartbeatTime.Time
			}
			return st
		},
		Claim: func(s *stashv1beta1.RestoreSession, by string, now time.Time) {
			s.Status.Phase, s.Status.ClaimedBy, s.Status.HeartbeatTime = stashv1beta1.RestoreRunning, by, &metav1.Time{Time: now}
		},
		Beat: func(s *stashv1beta1.RestoreSession, now time.Time) { s.Status.HeartbeatTime = &metav1.Time{Time: now} },
	}
}

func newLife(c Client[*stashv1beta1.RestoreSession], id string) *Lifecycle[*stashv1beta1.RestoreSession] {
	return &Lifecycle[*stashv1beta1.RestoreSession]{Kind: restoreKind(c), Identity: id, Clock: time.Now, Lease: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// Two agents claim the same Pending session from the same read: one wins,
// the other hears no error and does not run it. Only the winner's final
// write lands; a settle by another agent shuts the winner's write out.
func TestClaimAndFinalWrite(t *testing.T) {
	ctx := context.Background()
	st := &store{objs: map[string]*stashv1beta1.RestoreSession{"r": {ObjectMeta: metav1.ObjectMeta{Name: "r", ResourceVersion: "a"}}}}
	a, b := newLife(st, "agent-a"), newLife(st, "agent-b")
	seen, _ := st.Get(ctx, "r")
	got, ok, err := a.Claim(ctx, seen)
	if err != nil || !ok || got.Status.ClaimedBy != "agent-a" || got.Status.Phase != stashv1beta1.RestoreRunning {
		t.Fatalf("first claim: ok=%v err=%v status=%+v", ok, err, got.Status)
	}
	if _, ok, err := b.Claim(ctx, seen); ok || err != nil {
		t.Fatalf("second claim from the same read: ok=%v err=%v; want a silent loss", ok, err)
	}
	if err := b.Finish(ctx, "r", func(s *stashv1beta1.RestoreSession) { s.Status.Phase = stashv1beta1.RestoreSucceeded }); !errors.Is(err, ErrSettled) {
		t.Fatalf("the loser's final write: %v, want ErrSettled", err)
	}
	// A new leader settles it (say, taken for orphaned); the owner's late
	// write must not overwrite that verdict.
	if err := b.Settle(ctx, "r", func(s *stashv1beta1.RestoreSession) bool { return s.Status.ClaimedBy == "agent-a" },
		func(s *stashv1beta1.RestoreSession) {
			s.Status.Phase = stashv1beta1.RestoreFailed
			s.Status.Message = "orphaned"
		}); err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(ctx, "r", func(s *stashv1beta1.RestoreSession) { s.Status.Phase = stashv1beta1.RestoreSucceeded }); !errors.Is(err, ErrSettled) {
		t.Fatalf("the owner's write after a settle: %v, want ErrSettled", err)
	}
	if cur, _ := st.Get(ctx, "r"); cur.Status.Phase != stashv1beta1.RestoreFailed || cur.Status.Message != "orphaned" {
		t.Fatalf("the settled verdict was overwritten: %+v", cur.Status)
	}
}

// A final write goes on through a transient API error and stops at once
// on a permanent one.
func TestFinishRetriesTransientErrors(t *testing.T) {
	ctx := context.Background()
	st := &store{objs: map[string]*stashv1beta1.RestoreSession{"r": {ObjectMeta: metav1.ObjectMeta{Name: "r", ResourceVersion: "a"}}}}
	l := newLife(st, "me")
	seen, _ := st.Get(ctx, "r")
	if _, ok, _ := l.Claim(ctx, seen); !ok {
		t.Fatal("claim failed")
	}
	st.fail = apierrors.NewServiceUnavailable("the API server is restarting")
	if err := l.Finish(ctx, "r", func(s *stashv1beta1.RestoreSession) { s.Status.Phase = stashv1beta1.RestoreSucceeded }); err != nil {
		t.Fatalf("a 503 once: %v", err)
	}
	if cur, _ := st.Get(ctx, "r"); cur.Status.Phase != stashv1beta1.RestoreSucceeded {
		t.Fatalf("phase %s after the retried write", cur.Status.Phase)
	}
	start := time.Now()
	err := Durable(ctx, Client[*stashv1beta1.RestoreSession](st), "gone", func(*stashv1beta1.RestoreSession) {})
	if !apierrors.IsNotFound(err) || time.Since(start) > time.Second {
		t.Fatalf("NotFound: %v after %s; want it at once", err, time.Since(start))
	}
}

// The heartbeat moves while the session is Running under this agent and
// stops by itself once someone else settled it.
func TestHeartbeat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := &store{objs: map[string]*stashv1beta1.RestoreSession{"r": {ObjectMeta: metav1.ObjectMeta{Name: "r", ResourceVersion: "a"}}}}
	l := newLife(st, "me")
	seen, _ := st.Get(ctx, "r")
	claimed, _, _ := l.Claim(ctx, seen)
	done := make(chan struct{})
	go func() { l.Heartbeat(ctx, "r"); close(done) }()
	first := claimed.Status.HeartbeatTime.Time
	for {
		cur, _ := st.Get(ctx, "r")
		if cur.Status.HeartbeatTime.Time.After(first) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the heartbeat never moved")
		case <-time.After(5 * time.Millisecond):
		}
	}
	other := newLife(st, "leader")
	if err := other.Settle(ctx, "r", func(*stashv1beta1.RestoreSession) bool { return true },
		func(s *stashv1beta1.RestoreSession) { s.Status.Phase = stashv1beta1.RestoreFailed }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the heartbeat went on after the session was settled")
	}
}
