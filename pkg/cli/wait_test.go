package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// fakeTTY is a writer that says it is a terminal.
type fakeTTY struct{ bytes.Buffer }

func (*fakeTTY) IsTerminal() bool { return true }

// scripted returns the states one per poll, then the last one forever,
// and moves the fake clock by step per poll.
func scripted(clock *time.Time, step time.Duration, states ...sessionState) func(context.Context) (sessionState, error) {
	i := 0
	return func(context.Context) (sessionState, error) {
		st := states[min(i, len(states)-1)]
		i++
		*clock = clock.Add(step)
		return st, nil
	}
}

func running(done, total, rate int64) sessionState {
	return sessionState{Phase: "Running", Progress: &stashv1beta1.Progress{BytesDone: done, BytesTotal: total, BytesPerSecond: rate}}
}

func TestWaitOnATerminalDrawsAProgressBar(t *testing.T) {
	clock := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	var progress fakeTTY
	var out bytes.Buffer
	const mib = 1 << 20
	w := &SessionWait{
		Kind: stashv1beta1.KindRestoreSession, Resource: "restoresession", Namespace: "ns", Name: "db-restore-x",
		Timeout: time.Minute, Every: time.Millisecond, Progress: &progress, Out: &out,
		Now: func() time.Time { return clock },
		Get: scripted(&clock, time.Second,
			sessionState{},
			running(0, 0, 0),
			running(10*mib, 40*mib, 5*mib),
			running(25*mib, 40*mib, 5*mib),
			running(40*mib, 40*mib, 5*mib),
			sessionState{Phase: "Succeeded", Succeeded: true, Duration: "4s", Message: "restored"}),
	}
	if err := w.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := progress.String()
	for _, want := range []string{
		"db-restore-x: Pending (waiting for the agent)\n", // before any progress, a plain line
		"db-restore-x Running",                            // the bar's description
		"\r",                                              // redrawn in place
		"|",                                               // the bar itself
		" 62% |",                                          // the share
		"25.000 MiB done of 40.000 MiB, 5.000 MiB/s", // done of the known total, the agent's rate
		"elapsed 4s, ETA 3s",                         // from the session's start; what is left at that rate
	} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	if !strings.HasSuffix(got, "\n") {
		t.Errorf("the bar's line is not ended before the outcome:\n%q", got)
	}
	if !strings.Contains(out.String(), "RestoreSession db-restore-x Succeeded in 4s: restored") {
		t.Errorf("outcome: %q", out.String())
	}
}

// A backup's total is unknown while the dump streams: a spinner with the
// bytes done and the elapsed time, no percentage or ETA.
func TestWaitOnATerminalWithoutATotal(t *testing.T) {
	clock := time.Now()
	var progress fakeTTY
	var out bytes.Buffer
	w := &SessionWait{
		Kind: stashv1beta1.KindBackupSession, Resource: "backupsession", Namespace: "ns", Name: "nightly-abc",
		Timeout: time.Minute, Every: time.Millisecond, Progress: &progress, Out: &out,
		Get: scripted(&clock, time.Second,
			running(3<<20, 0, 1<<20), running(6<<20, 0, 1<<20),
			sessionState{Phase: "Failed", Failed: true, Message: "mysqldump: access denied"}),
	}
	err := w.Run(context.Background())
	if !errors.Is(err, ErrSessionFailed) || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("err = %v, want ErrSessionFailed with the message", err)
	}
	got := progress.String()
	if !strings.Contains(got, "nightly-abc Running") || !strings.Contains(got, "MiB") || strings.Contains(got, "%") {
		t.Errorf("spinner output:\n%q", got)
	}
}

// Piped, the wait writes whole lines: one per phase change, and at most one
// progress line every LineEvery however often the status changes.
func TestWaitPipedWritesPlainLines(t *testing.T) {
	clock := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	var progress, out bytes.Buffer
	states := []sessionState{{}, {Phase: "Running"}}
	for i := int64(1); i <= 20; i++ { // 20 updates, one a second
		states = append(states, running(i<<20, 20<<20, 1<<20))
	}
	states = append(states, sessionState{Phase: "Succeeded", Succeeded: true, Duration: "22s"})
	w := &SessionWait{
		Kind: stashv1beta1.KindBackupSession, Resource: "backupsession", Namespace: "ns", Name: "nightly-abc",
		Timeout: time.Minute, Every: time.Millisecond, LineEvery: 5 * time.Second, Progress: &progress, Out: &out,
		Now: func() time.Time { return clock },
		Get: scripted(&clock, time.Second, states...),
	}
	if err := w.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := progress.String()
	if strings.Contains(got, "\r") || strings.Contains(got, "\x1b") {
		t.Errorf("piped output has terminal control characters:\n%q", got)
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if lines[0] != "nightly-abc: Pending (waiting for the agent)" || lines[1] != "nightly-abc: Running" {
		t.Errorf("phase lines: %q", lines)
	}
	prog := lines[2:]
	if len(prog) < 2 || len(prog) > 5 {
		t.Fatalf("%d progress lines for 20s of updates with one line per 5s:\n%s", len(prog), got)
	}
	for _, l := range prog {
		if !strings.HasPrefix(l, "nightly-abc: Running  ") || !strings.Contains(l, "MiB done of 20.000 MiB") || !strings.Contains(l, "1.000 MiB/s") || !strings.Contains(l, "elapsed") {
			t.Errorf("progress line %q lacks bytes, total, rate or elapsed", l)
		}
		if !strings.Contains(l, "(100%)") && !strings.Contains(l, "ETA") {
			t.Errorf("progress line %q lacks the ETA", l)
		}
	}
	if !strings.HasPrefix(out.String(), "BackupSession nightly-abc Succeeded in 22s") {
		t.Errorf("outcome: %q", out.String())
	}
}

func TestWaitTimesOut(t *testing.T) {
	var progress, out bytes.Buffer
	w := &SessionWait{
		Kind: stashv1beta1.KindBackupSession, Resource: "backupsession", Namespace: "ns", Name: "slow",
		Timeout: 50 * time.Millisecond, Every: 5 * time.Millisecond, Progress: &progress, Out: &out,
		Get: func(context.Context) (sessionState, error) { return sessionState{Phase: "Running"}, nil },
	}
	err := w.Run(context.Background())
	if !errors.Is(err, ErrWaitTimeout) || !strings.Contains(err.Error(), "kubectl get backupsession slow -n ns -w") {
		t.Fatalf("err = %v", err)
	}
	if n := strings.Count(progress.String(), "\n"); n != 1 {
		t.Errorf("an unchanged phase printed %d lines:\n%s", n, progress.String())
	}
}
