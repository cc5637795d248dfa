// Package election elects one leader among an agent's replicas with a
// coordination.k8s.io Lease, the way client-go's leaderelection does, on
// the agent's own small client: client-go's package pulls in every
// built-in API group (informers, the full clientset) for one Lease.
//
// A replica leads while it renews the Lease within RenewDeadline. Another
// replica takes over once it has seen the same Lease record unchanged for
// LeaseDuration, measured on its own clock, so clock skew between nodes
// does not matter. Writes use the Lease's resourceVersion: of two replicas
// racing for it, one wins.
//
// The leader renews from the Lease it last wrote, with no GET: an idle
// agent's only request is one update every RenewPeriod. A Conflict means
// someone else wrote the Lease; only then is it read again.
package election

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Leases is what the elector needs from the API.
type Leases interface {
	Get(ctx context.Context, name string) (*coordinationv1.Lease, error)
	Create(ctx context.Context, l *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// Elector campaigns for one Lease.
type Elector struct {
	Leases    Leases
	Namespace string
	Name      string
	Identity  string
	// LeaseDuration is how long others wait before taking over; the
	// leader renews every RenewPeriod (RetryPeriod when 0) and gives up
	// after RenewDeadline without a renewal. A follower tries every
	// RetryPeriod, and so does a leader whose renewal failed.
	LeaseDuration, RenewDeadline, RenewPeriod, RetryPeriod time.Duration
	// Patience, when > 0, ends a campaign once one other holder has kept
	// the Lease that long: a queue of short terms that moves is waited
	// for, however long it is, a holder that stays is not.
	Patience time.Duration
	Clock    func() time.Time
	Log      *slog.Logger

	observedRV     string
	observedTime   time.Time
	observedHolder string
	observedTerm   string // holder and acquire time: a new term, even of the same holder
	// held is the Lease as this replica last wrote it while holding it:
	// the next renewal updates it without reading it first.
	held *coordinationv1.Lease
}

// Run campaigns until ctx ends. While leading it runs lead with a context
// that ends when leadership is lost (or ctx ends), and waits for lead to
// return. It returns after one term (lead returned, or leadership was
// lost) or when ctx ends, having released the Lease if it still held it:
// a leader whose work stopped must not keep others waiting.
func (e *Elector) Run(ctx context.Context, lead func(context.Context)) {
	if e.Clock == nil {
		e.Clock = time.Now
	}
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	if !e.acquire(ctx) {
		return
	}
	leadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel() // the term ends with lead
		lead(leadCtx)
	}()
	e.renew(leadCtx)
	cancel()
	<-done
	e.release()
}

// acquire tries every RetryPeriod until it holds the Lease, ctx ends, or
// one holder has outlasted Patience.
func (e *Elector) acquire(ctx context.Context) bool {
	term, since := "", e.Clock()
	for {
		if e.tryAcquireOrRenew(ctx) {
			return true
		}
		if e.observedTerm != term {
			term, since = e.observedTerm, e.Clock()
		}
		if e.Patience > 0 && e.Clock().Sub(since) >= e.Patience {
			return false
		}
		if !sleep(ctx, jitter(e.RetryPeriod)) {
			return false
		}
	}
}

// Holder is the holder of the Lease as last read, "" when free or unread:
// after a Run that never led, who kept it.
func (e *Elector) Holder() string { return e.observedHolder }

// renew keeps the Lease until a renewal fails for RenewDeadline, or ctx ends.
func (e *Elector) renew(ctx context.Context) {
	period := e.RenewPeriod
	if period <= 0 {
		period = e.RetryPeriod
	}
	last := e.Clock()
	for wait := period; sleep(ctx, wait); {
		// A renewal counts from when it was sent, not when it returned:
		// the record others time was written in between, so the leader
		// never leads past RenewDeadline after it.
		sent := e.Clock()
		rctx, cancel := context.WithTimeout(ctx, e.RenewDeadline)
		ok := e.tryAcquireOrRenew(rctx)
		cancel()
		now := e.Clock()
		if ok {
			last, wait = sent, period
			continue
		}
		if now.Sub(last) >= e.RenewDeadline {
			e.Log.Info("lost the Lease: no renewal within the deadline", "lease", e.Name, "deadline", e.RenewDeadline.String())
			return
		}
		wait = min(e.RetryPeriod, period)
	}
}

// tryAcquireOrRenew takes or renews the Lease once.
func (e *Elector) tryAcquireOrRenew(ctx context.Context) bool {
	now := metav1.NewMicroTime(e.Clock())
	mine := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(e.Identity),
		LeaseDurationSeconds: ptr.To(int32(e.LeaseDuration / time.Second)),
		AcquireTime:          &now,
		RenewTime:            &now,
	}
	if e.held != nil {
		next := e.held.DeepCopy()
		next.Spec.RenewTime, next.Spec.LeaseDurationSeconds = mine.RenewTime, mine.LeaseDurationSeconds
		updated, err := e.Leases.Update(ctx, next)
		if err == nil {
			e.hold(updated)
			return true
		}
		if !apierrors.IsConflict(err) {
			return false // the API is away: try again, from the same record
		}
		e.held = nil // someone else wrote it: read it below
	}
	cur, err := e.Leases.Get(ctx, e.Name)
	if apierrors.IsNotFound(err) {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: e.Namespace}, Spec: mine}
		created, err := e.Leases.Create(ctx, l, metav1.CreateOptions{})
		if err != nil {
			return false
		}
		e.hold(created)
		return true
	}
	if err != nil {
		e.Log.Debug("could not read the Lease", "lease", e.Name, "err", err)
		return false
	}
	if cur.ResourceVersion != e.observedRV {
		e.observe(cur)
	}
	holder := ptr.Deref(cur.Spec.HolderIdentity, "")
	held := holder != "" && holder != e.Identity
	if held && e.observedTime.Add(e.LeaseDuration).After(e.Clock()) {
		return false // someone else holds it and has renewed recently
	}
	next := cur.DeepCopy()
	next.Spec = mine
	if holder == e.Identity {
		next.Spec.AcquireTime = cur.Spec.AcquireTime
		next.Spec.LeaseTransitions = cur.Spec.LeaseTransitions
	} else {
		next.Spec.LeaseTransitions = ptr.To(ptr.Deref(cur.Spec.LeaseTransitions, 0) + 1)
	}
	updated, err := e.Leases.Update(ctx, next)
	if err != nil {
		return false // a Conflict: another replica wrote first
	}
	e.hold(updated)
	return true
}

func (e *Elector) observe(l *coordinationv1.Lease) {
	e.observedRV, e.observedTime = l.ResourceVersion, e.Clock()
	e.observedHolder = ptr.Deref(l.Spec.HolderIdentity, "")
	e.observedTerm = e.observedHolder
	if t := l.Spec.AcquireTime; t != nil {
		e.observedTerm += "@" + t.UTC().Format(time.RFC3339Nano)
	}
}

// hold records a Lease this replica wrote and now holds.
func (e *Elector) hold(l *coordinationv1.Lease) {
	e.observe(l)
	e.held = l
}

// release gives the Lease up, so that another replica need not wait for it
// to expire.
func (e *Elector) release() {
	e.held = nil
	ctx, cancel := context.WithTimeout(context.Background(), e.RenewDeadline)
	defer cancel()
	cur, err := e.Leases.Get(ctx, e.Name)
	if err != nil || ptr.Deref(cur.Spec.HolderIdentity, "") != e.Identity {
		return
	}
	now := metav1.NewMicroTime(e.Clock())
	next := cur.DeepCopy()
	next.Spec.HolderIdentity = nil
	next.Spec.LeaseDurationSeconds = ptr.To(int32(1))
	next.Spec.RenewTime = &now
	if _, err := e.Leases.Update(ctx, next); err != nil {
		e.Log.Info("could not release the Lease", "lease", e.Name, "err", err)
	}
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
