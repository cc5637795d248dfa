// Package apihealth tells whether the API server answers a client, for the
// agent's readiness: every request the client makes counts, and a probe is
// made only when none answered lately, so an idle agent adds no load.
package apihealth

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Tracker records when the API server last answered.
type Tracker struct {
	clock func() time.Time
	fresh time.Duration
	probe func(context.Context) error

	mu      sync.Mutex
	last    time.Time
	lastErr error
}

// New makes a Tracker: an answer within fresh is enough; otherwise probe
// (a cheap GET through the tracked client) decides.
func New(clock func() time.Time, fresh time.Duration) *Tracker {
	return &Tracker{clock: clock, fresh: fresh}
}

// SetProbe sets the request Ready makes when no answer is fresh.
func (t *Tracker) SetProbe(probe func(context.Context) error) { t.probe = probe }

// Wrap is a rest.Config WrapTransport: any response but a 5xx or a 401
// means the API server answers this client (a 403 is an answer too).
func (t *Tracker) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		switch {
		case err != nil:
			t.record(fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err))
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusUnauthorized:
			t.record(fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
		default:
			t.record(nil)
		}
		return resp, err
	})
}

func (t *Tracker) record(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.last, t.lastErr = t.clock(), nil
		return
	}
	t.lastErr = err
}

// Ready returns nil when the API server answered within the fresh window,
// or answers the probe now; else why not.
func (t *Tracker) Ready(ctx context.Context) error {
	t.mu.Lock()
	ok := !t.last.IsZero() && t.clock().Sub(t.last) < t.fresh
	t.mu.Unlock()
	if ok {
		return nil
	}
	if t.probe != nil {
		if err := t.probe(ctx); err == nil {
			t.record(nil)
			return nil
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lastErr != nil {
		return fmt.Errorf("the API server has not answered since %s: %w", t.since(), t.lastErr)
	}
	return fmt.Errorf("the API server has not answered since %s", t.since())
}

func (t *Tracker) since() string {
	if t.last.IsZero() {
		return "the agent started"
	}
	return t.last.UTC().Format(time.RFC3339)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
