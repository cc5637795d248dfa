package election

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// memLeases stores one Lease with resourceVersion checks, as the API does.
type memLeases struct {
	mu    sync.Mutex
	lease *coordinationv1.Lease
	rv    int
}

var leaseGR = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

func (m *memLeases) Get(_ context.Context, name string) (*coordinationv1.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lease == nil {
		return nil, apierrors.NewNotFound(leaseGR, name)
	}
	return m.lease.DeepCopy(), nil
}

func (m *memLeases) Create(_ context.Context, l *coordinationv1.Lease, _ metav1.CreateOptions) (*coordinationv1.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lease != nil {
		return nil, apierrors.NewAlreadyExists(leaseGR, l.Name)
	}
	m.rv++
	m.lease = l.DeepCopy()
	m.lease.ResourceVersion = strconv.Itoa(m.rv)
	return m.lease.DeepCopy(), nil
}

func (m *memLeases) Update(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lease == nil || l.ResourceVersion != m.lease.ResourceVersion {
		return nil, apierrors.NewConflict(leaseGR, l.Name, errors.New("stale"))
	}
	m.rv++
	m.lease = l.DeepCopy()
	m.lease.ResourceVersion = strconv.Itoa(m.rv)
	return m.lease.DeepCopy(), nil
}

// cut makes one replica's API calls fail, as a network partition would.
type cut struct {
	Leases
	down atomic.Bool
}

var errDown = errors.New("connection refused")

func (c *cut) Get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	if c.down.Load() {
		return nil, errDown
	}
	return c.Leases.Get(ctx, name)
}

func (c *cut) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if c.down.Load() {
		return nil, errDown
	}
	return c.Leases.Update(ctx, l)
}

const lease = 700 * time.Millisecond

func elector(l Leases, id string) *Elector {
	return &Elector{Leases: l, Namespace: "ns", Name: "agent", Identity: id, LeaseDuration: lease, RenewDeadline: lease * 2 / 3, RetryPeriod: lease / 7}
}

// replica runs an elector in a loop, as the agent does, recording when it leads.
type replica struct {
	leading atomic.Bool
	since   atomic.Int64 // unix nanos of the last start of leading
	terms   atomic.Int32
	cancel  context.CancelFunc
	done    chan struct{}
}

func start(e *Elector) *replica {
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			e.Run(ctx, func(ctx context.Context) {
				r.terms.Add(1)
				r.since.Store(time.Now().UnixNano())
				r.leading.Store(true)
				<-ctx.Done()
				r.leading.Store(false)
			})
		}
	}()
	return r
}

func (r *replica) stop() { r.cancel(); <-r.done }

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestOneLeaderAndReleaseOnStop(t *testing.T) {
	m := &memLeases{}
	a := start(elector(m, "a"))
	waitFor(t, 2*time.Second, "a to lead", a.leading.Load)
	b := start(elector(m, "b"))
	defer b.stop()
	// b never leads while a renews.
	for range 3 * int(lease/(10*time.Millisecond)) / 2 {
		if b.leading.Load() {
			t.Fatal("b leads while a holds the Lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.stop() // releases the Lease
	took := waitFor(t, 2*time.Second, "b to lead", b.leading.Load)
	if took > lease/2 {
		t.Errorf("b took %s to lead after a released the Lease; want well under the %s lease", took, lease)
	}
	if a.leading.Load() {
		t.Error("a still leads after it stopped")
	}
}

func TestTakeOverFromAPartitionedLeader(t *testing.T) {
	m := &memLeases{}
	ca := &cut{Leases: m}
	a := start(elector(ca, "a"))
	defer a.stop()
	waitFor(t, 2*time.Second, "a to lead", a.leading.Load)
	b := start(elector(m, "b"))
	defer b.stop()
	time.Sleep(lease / 2)
	ca.down.Store(true)
	cutAt := time.Now()
	// a steps down within its renew deadline (plus a retry period)...
	waitFor(t, lease, "a to step down", func() bool { return !a.leading.Load() })
	// ...and b takes over once the record has been unchanged for a lease.
	waitFor(t, 3*lease, "b to take over", b.leading.Load)
	if took := time.Since(cutAt); took < lease/2 || took > 2*lease {
		t.Errorf("b led %s after a was cut off; want about one lease (%s)", took, lease)
	}
	if a.leading.Load() && b.leading.Load() {
		t.Error("two leaders")
	}
	// a comes back and does not take the Lease from b.
	ca.down.Store(false)
	time.Sleep(2 * lease)
	if a.leading.Load() || !b.leading.Load() {
		t.Errorf("after a returned: a leading %v, b leading %v; want b only", a.leading.Load(), b.leading.Load())
	}
	l, _ := m.Get(context.Background(), "agent")
	if got := *l.Spec.LeaseTransitions; got != 1 {
		t.Errorf("%d lease transitions, want 1", got)
	}
}

// Replicas racing for a new Lease: exactly one wins each time.
func TestRaceForANewLease(t *testing.T) {
	for range 20 {
		m := &memLeases{}
		rs := []*replica{start(elector(m, "a")), start(elector(m, "b")), start(elector(m, "c"))}
		waitFor(t, 2*time.Second, "a leader", func() bool {
			return rs[0].leading.Load() || rs[1].leading.Load() || rs[2].leading.Load()
		})
		time.Sleep(lease / 2)
		n := 0
		for _, r := range rs {
			if r.leading.Load() {
				n++
			}
		}
		for _, r := range rs {
			r.stop()
		}
		if n != 1 {
			t.Fatalf("%d leaders", n)
		}
	}
}

// A term ends when lead returns, and the Lease is released at once: Run
// serves as a lock across processes (the agents' repository init).
func TestRunAsALock(t *testing.T) {
	m := &memLeases{}
	var inside, most, runs atomic.Int32
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			elector(m, "r"+strconv.Itoa(i)).Run(ctx, func(context.Context) {
				n := inside.Add(1)
				for {
					old := most.Load()
					if n <= old || most.CompareAndSwap(old, n) {
						break
					}
				}
				time.Sleep(50 * time.Millisecond)
				inside.Add(-1)
				runs.Add(1)
			})
		}()
	}
	wg.Wait()
	if runs.Load() != 4 || most.Load() != 1 {
		t.Fatalf("%d runs, at most %d at once; want 4 runs, one at a time", runs.Load(), most.Load())
	}
	// Nobody waited for a Lease to expire: each term released it.
	if took := time.Since(begin); took > 4*lease {
		t.Errorf("4 short terms took %s; want well under 4 leases (%s)", took, 4*lease)
	}
	l, _ := m.Get(context.Background(), "agent")
	if l.Spec.HolderIdentity != nil {
		t.Errorf("the Lease is still held by %s", *l.Spec.HolderIdentity)
	}
}

// counting counts the requests one replica makes.
type counting struct {
	Leases
	gets, updates atomic.Int32
}

func (c *counting) Get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	c.gets.Add(1)
	return c.Leases.Get(ctx, name)
}

func (c *counting) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	c.updates.Add(1)
	return c.Leases.Update(ctx, l)
}

// A leader renews with one update per RenewPeriod and reads nothing; when
// someone else writes the Lease, its next renewal conflicts, reads it and
// yields to a holder that renewed.
func TestLeaderRenewsWithoutReading(t *testing.T) {
	m := &memLeases{}
	c := &counting{Leases: m}
	e := elector(c, "a")
	e.RenewPeriod = lease / 7
	e.RetryPeriod = lease / 14
	a := start(e)
	defer a.stop()
	waitFor(t, 2*time.Second, "a to lead", a.leading.Load)
	gets, updates := c.gets.Load(), c.updates.Load()
	time.Sleep(3 * lease)
	renewals := c.updates.Load() - updates
	if got := c.gets.Load() - gets; got != 0 {
		t.Errorf("the leader read the Lease %d times in %s; want none", got, 3*lease)
	}
	// About 21 periods; timers only run late, so never more.
	if renewals < 12 || renewals > 21 {
		t.Errorf("%d renewals in %s, want about %d", renewals, 3*lease, 3*lease/e.RenewPeriod)
	}
	// Another replica's record (it took the Lease over): a conflicts, reads
	// it, and steps down within its renew deadline.
	l, _ := m.Get(context.Background(), "agent")
	l.Spec.HolderIdentity = ptr.To("b")
	now := metav1.NewMicroTime(time.Now())
	l.Spec.RenewTime = &now
	if _, err := m.Update(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	keep := make(chan struct{})
	go func() { // b keeps renewing, reading and writing as a follower-turned-leader would
		for {
			select {
			case <-keep:
				return
			case <-time.After(lease / 7):
			}
			cur, _ := m.Get(context.Background(), "agent")
			if ptr.Deref(cur.Spec.HolderIdentity, "") != "b" {
				return
			}
			_, _ = m.Update(context.Background(), cur)
		}
	}()
	defer close(keep)
	waitFor(t, lease, "a to step down", func() bool { return !a.leading.Load() })
	if c.gets.Load() == gets {
		t.Error("a stepped down without reading the Lease that conflicted")
	}
}

// With Patience, a campaign waits behind a queue of short terms however
// long the queue takes, and gives up on one holder that stays.
func TestPatienceWaitsForAQueueNotForAHolderThatStays(t *testing.T) {
	const patience = 300 * time.Millisecond
	m := &memLeases{}
	// A queue: six terms of 150 ms one after another, 900 ms in all,
	// three times the patience of the one waiting at its end.
	var wg sync.WaitGroup
	var queued atomic.Int32
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			elector(m, "q"+strconv.Itoa(i)).Run(ctx, func(context.Context) {
				queued.Add(1)
				time.Sleep(150 * time.Millisecond)
			})
		}()
	}
	waitFor(t, 2*time.Second, "the queue to start", func() bool { return queued.Load() > 0 })
	last := elector(m, "last")
	last.Patience = patience
	led := false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	last.Run(ctx, func(context.Context) { led = true })
	wg.Wait()
	if !led {
		t.Fatalf("gave up after %s behind a moving queue (holder %q); want to lead once the queue is through", time.Since(start), last.Holder())
	}

	// One holder that stays: given up after about the patience, naming it.
	stay, stop := context.WithCancel(context.Background())
	defer stop()
	held := make(chan struct{})
	go elector(m, "stays").Run(stay, func(ctx context.Context) { close(held); <-ctx.Done() })
	<-held
	waiting := elector(m, "waiting")
	waiting.Patience = patience
	start = time.Now()
	waiting.Run(ctx, func(context.Context) { t.Error("led while another held the Lease") })
	if took := time.Since(start); took < patience || took > patience+lease {
		t.Errorf("gave up after %s; want about the patience, %s", took, patience)
	}
	if waiting.Holder() != "stays" {
		t.Errorf("Holder() = %q; want the one that stayed", waiting.Holder())
	}
}
