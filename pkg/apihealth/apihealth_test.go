package apihealth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadyFollowsAnswers(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(status.Load())) }))
	defer srv.Close()
	now := time.Unix(1000, 0)
	tr := New(func() time.Time { return now }, 10*time.Second)
	c := &http.Client{Transport: tr.Wrap(http.DefaultTransport)}
	get := func(context.Context) error {
		resp, err := c.Get(srv.URL + "/version")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	}
	tr.SetProbe(get)
	ctx := context.Background()
	if err := tr.Ready(ctx); err != nil {
		t.Fatalf("fresh agent, API answers the probe: %v", err)
	}
	// A 403 is an answer: the agent's Role may refuse a request.
	status.Store(403)
	_ = get(ctx)
	now = now.Add(9 * time.Second)
	if err := tr.Ready(ctx); err != nil {
		t.Fatalf("answered 9s ago: %v", err)
	}
	// The API server fails: once nothing is fresh, the probe decides.
	status.Store(503)
	now = now.Add(2 * time.Second)
	if err := tr.Ready(ctx); err == nil {
		t.Fatal("ready though the API server answers only 503")
	}
	srv.Close()
	if err := tr.Ready(ctx); err == nil {
		t.Fatal("ready though the API server is gone")
	}
}
