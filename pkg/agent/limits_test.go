package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

func TestSessionLimit(t *testing.T) {
	a := &Agent{cfg: Config{SessionTimeout: DefaultSessionTimeout}}
	l, err := a.sessionLimit("", "BackupConfiguration", "nightly")
	if err != nil || l.d != 24*time.Hour {
		t.Fatalf("default: %+v %v", l, err)
	}
	for _, w := range []string{"24h0m0s", "--session-timeout", "spec.timeOut", "--session-timeout 48h", "nightly"} {
		if !strings.Contains(l.raise, w) {
			t.Errorf("default limit %q does not say %q", l.raise, w)
		}
	}
	if l, err = a.sessionLimit("48h", "BackupConfiguration", "nightly"); err != nil || l.d != 48*time.Hour || !strings.Contains(l.raise, "spec.timeOut 48h") {
		t.Errorf("a timeOut above the default: %+v %v", l, err)
	}
	if l, _ = a.sessionLimit("", "RestoreSession", "r1"); !strings.Contains(l.raise, "--session-timeout 48h") {
		t.Errorf("restore: %q", l.raise)
	}
	for _, bad := range []string{"0s", "-1h", "soon"} {
		if _, err := a.sessionLimit(bad, "BackupConfiguration", "nightly"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad) {
			t.Errorf("timeOut %q: %v", bad, err)
		}
	}
	none := &Agent{cfg: Config{SessionTimeout: 0}}
	if l, err := none.sessionLimit("", "BackupConfiguration", "nightly"); err != nil || l.d != 0 {
		t.Errorf("--session-timeout 0: %+v %v", l, err)
	}
}

func TestPastDeadline(t *testing.T) {
	deadline := time.Unix(1000, 0)
	interrupted := fmt.Errorf("restic backup: %w", restic.ErrInterrupted)
	cases := []struct {
		err  error
		end  time.Time
		want bool
	}{
		{context.DeadlineExceeded, deadline.Add(-time.Hour), true},
		{interrupted, deadline.Add(time.Second), true},
		{interrupted, deadline.Add(-time.Second), false},
		{errors.New("other"), deadline.Add(time.Hour), false},
	}
	for _, c := range cases {
		if got := pastDeadline(c.err, deadline, c.end); got != c.want {
			t.Errorf("pastDeadline(%v, end %s) = %v", c.err, c.end.Sub(deadline), got)
		}
	}
	if pastDeadline(interrupted, time.Time{}, deadline) {
		t.Error("no deadline, yet past it")
	}
}
