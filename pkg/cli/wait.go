package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/watch"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// sessionState is what waiting needs from a BackupSession or a RestoreSession.
type sessionState struct {
	Phase     string
	Succeeded bool // ended well
	Failed    bool // ended badly (Failed, Skipped, Invalid, Unknown)
	Message   string
	Duration  string
	Progress  *stashv1beta1.Progress
	Start     *time.Time
}

// SessionWait waits for one session to end, showing its progress on
// Progress: a progress bar when Progress is a terminal, else plain lines
// (one per phase change, and at most one progress line every LineEvery).
// The outcome goes to Out. trigger --wait and restore --wait both use it.
type SessionWait struct {
	Kind      string // BackupSession or RestoreSession
	Resource  string // backupsession or restoresession, for the `kubectl get` hint
	Namespace string
	Name      string
	Get       func(ctx context.Context) (sessionState, error)
	// Watch, when set, wakes the wait as soon as the object changes; the
	// poll every Every stays as the fallback.
	Watch     func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Timeout   time.Duration
	Every     time.Duration
	LineEvery time.Duration
	Progress  io.Writer
	Out       io.Writer
	Now       func() time.Time
}

// defaultLineEvery bounds the progress lines of a piped wait.
const defaultLineEvery = 5 * time.Second

// Run waits. It returns nil when the session Succeeded, ErrSessionFailed
// when it ended otherwise, and ErrWaitTimeout after Timeout.
func (w *SessionWait) Run(ctx context.Context) error {
	if w.Now == nil {
		w.Now = time.Now
	}
	if w.Every <= 0 {
		w.Every = time.Second
	}
	if w.LineEvery <= 0 {
		w.LineEvery = defaultLineEvery
	}
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	var changed <-chan struct{}
	if w.Watch != nil {
		changed = wakeOnChange(ctx, w.Watch, w.Name)
	}
	var rep progressReporter = &lineReporter{w: w}
	if isTerminal(w.Progress) {
		rep = &barReporter{w: w}
	}
	started := w.Now()
	var lastErr error
	for {
		st, err := w.Get(ctx)
		switch {
		case apierrors.IsNotFound(err):
			rep.done(false)
			return fmt.Errorf("%s %s/%s was deleted while waiting", w.Kind, w.Namespace, w.Name)
		case err != nil && ctx.Err() == nil:
			lastErr = err // a passing outage: keep waiting, the poll retries
		case err == nil:
			lastErr = nil
			if st.Start == nil {
				st.Start = &started
			}
			switch {
			case st.Succeeded:
				rep.done(true)
				fmt.Fprintf(w.Out, "%s %s Succeeded in %s: %s\n", w.Kind, w.Name, st.Duration, st.Message)
				return nil
			case st.Failed:
				rep.done(false)
				return fmt.Errorf("%w: %s %s %s: %s", ErrSessionFailed, w.Kind, w.Name, st.Phase, st.Message)
			}
			rep.update(st)
		}
		select {
		case <-ctx.Done():
			rep.done(false)
			why := ""
			if lastErr != nil {
				why = fmt.Sprintf(" (last error: %v)", lastErr)
			}
			return fmt.Errorf("%w: %s %s/%s did not finish within %s%s; it may still finish: watch it with `kubectl get %s %s -n %s -w`",
				ErrWaitTimeout, w.Kind, w.Namespace, w.Name, w.Timeout, why, w.Resource, w.Name, w.Namespace)
		case <-changed:
		case <-time.After(w.Every):
		}
	}
}

// progressReporter shows a waiting session's progress.
type progressReporter interface {
	update(st sessionState)
	// done ends the display before the outcome is printed.
	done(ok bool)
}

// phaseText is the phase as shown, with what an empty one means, and
// the agent's message while it is not running (e.g. why it waits).
func phaseText(st sessionState) string {
	p := phaseOr(st.Phase, "Pending (waiting for the agent)")
	if st.Message != "" && st.Phase != string(stashv1beta1.RestoreRunning) {
		p += ": " + st.Message
	}
	return p
}

// lineReporter writes plain lines for a log or a pipe: one per phase
// change, and a progress line at most every LineEvery while bytes move.
type lineReporter struct {
	w         *SessionWait
	phase     string
	printed   bool
	lastLine  time.Time
	lastBytes int64
}

func (r *lineReporter) update(st sessionState) {
	now := r.w.Now()
	phase := phaseText(st)
	if !r.printed || phase != r.phase {
		fmt.Fprintf(r.w.Progress, "%s: %s\n", r.w.Name, phase)
		r.phase, r.printed, r.lastLine = phase, true, now
		if st.Progress != nil {
			r.lastBytes = st.Progress.BytesDone
		}
		return
	}
	p := st.Progress
	if p == nil || p.BytesDone == r.lastBytes || now.Sub(r.lastLine) < r.w.LineEvery {
		return
	}
	fmt.Fprintf(r.w.Progress, "%s: %s  %s\n", r.w.Name, phase, progressText(p, now.Sub(*st.Start), true))
	r.lastLine, r.lastBytes = now, p.BytesDone
}

func (r *lineReporter) done(bool) {}

// progressText is bytes done (of the total when known, with the share
// unless a bar shows it), rate, elapsed and ETA.
func progressText(p *stashv1beta1.Progress, elapsed time.Duration, share bool) string {
	s := session.HumanBytes(p.BytesDone) + " done"
	if p.BytesTotal > 0 {
		s += " of " + session.HumanBytes(p.BytesTotal)
		if share {
			s += fmt.Sprintf(" (%.0f%%)", 100*float64(p.BytesDone)/float64(p.BytesTotal))
		}
	}
	if p.BytesPerSecond > 0 {
		s += ", " + session.HumanBytes(p.BytesPerSecond) + "/s"
	}
	s += ", elapsed " + duration.HumanDuration(elapsed.Round(time.Second))
	if p.BytesTotal > p.BytesDone && p.BytesPerSecond > 0 {
		eta := time.Duration(float64(p.BytesTotal-p.BytesDone) / float64(p.BytesPerSecond) * float64(time.Second))
		s += ", ETA " + duration.HumanDuration(eta.Round(time.Second))
	}
	return s
}

// barReporter draws a progress bar on a terminal: the bar and its share
// once the total size is known (a spinner before), then the bytes done,
// the rate, the elapsed time and the ETA. The numbers are the session's
// own (the agent measures the rate; elapsed counts from the session's
// start), so the bar shows no guess of its own. Phases before any
// progress are plain lines.
type barReporter struct {
	w     *SessionWait
	bar   *progressbar.ProgressBar
	total int64
	phase string
}

func (r *barReporter) update(st sessionState) {
	phase := phaseText(st)
	p := st.Progress
	if p == nil || (p.BytesDone == 0 && p.BytesTotal == 0) {
		if r.bar == nil && phase != r.phase {
			fmt.Fprintf(r.w.Progress, "%s: %s\n", r.w.Name, phase)
		}
		r.phase = phase
		return
	}
	r.phase = phase
	if r.bar == nil || p.BytesTotal != r.total {
		r.newBar(p.BytesTotal)
	}
	r.bar.Describe(fmt.Sprintf("%s %s  %s", r.w.Name, phase, progressText(p, r.w.Now().Sub(*st.Start), false)))
	if r.total > 0 {
		_ = r.bar.Set64(min(p.BytesDone, r.total))
	}
}

// newBar starts a bar; a bar already drawn is left on its own line.
func (r *barReporter) newBar(total int64) {
	if r.bar != nil {
		_ = r.bar.Exit()
		fmt.Fprintln(r.w.Progress)
	}
	max := int64(-1) // a spinner until the total is known
	if total > 0 {
		max = total
	}
	r.total = total
	r.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(r.w.Progress),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(0),
		// No ticker goroutine: the spinner of an unknown total moves with
		// each status update, and nothing writes after the wait returns.
		progressbar.OptionSetSpinnerChangeInterval(0),
	)
}

func (r *barReporter) done(ok bool) {
	if r.bar == nil {
		return
	}
	if ok && r.total > 0 {
		_ = r.bar.Finish()
	} else {
		_ = r.bar.Exit()
	}
	fmt.Fprintln(r.w.Progress)
	r.bar = nil
}

// isTerminal says whether w is a terminal. A writer may say so itself
// (IsTerminal() bool), as tests do; else a file is asked.
func isTerminal(w io.Writer) bool {
	if t, ok := w.(interface{ IsTerminal() bool }); ok {
		return t.IsTerminal()
	}
	if f, ok := w.(interface{ Fd() uintptr }); ok {
		return term.IsTerminal(int(f.Fd()))
	}
	return false
}

// backupSessionWait waits for a BackupSession.
func backupSessionWait(c *Clients, ns, name string, timeout, every time.Duration, progress, out io.Writer) *SessionWait {
	return &SessionWait{
		Kind: stashv1beta1.KindBackupSession, Resource: "backupsession", Namespace: ns, Name: name,
		Timeout: timeout, Every: every, Progress: progress, Out: out,
		Watch: c.Stash.BackupSessions(ns).Watch,
		Get: func(ctx context.Context) (sessionState, error) {
			bs, err := c.Stash.BackupSessions(ns).Get(ctx, name)
			if err != nil {
				return sessionState{}, err
			}
			st := bs.Status
			out := sessionState{Phase: string(st.Phase), Message: st.Message, Duration: st.SessionDuration, Progress: st.Progress}
			if st.StartTime != nil {
				t := st.StartTime.Time
				out.Start = &t
			}
			switch st.Phase {
			case stashv1beta1.BackupSessionSucceeded:
				out.Succeeded = true
			case stashv1beta1.BackupSessionFailed, stashv1beta1.BackupSessionSkipped:
				out.Failed = true
			}
			return out, nil
		},
	}
}

// restoreSessionWait waits for a RestoreSession.
func restoreSessionWait(c *Clients, ns, name string, timeout, every time.Duration, progress, out io.Writer) *SessionWait {
	return &SessionWait{
		Kind: stashv1beta1.KindRestoreSession, Resource: "restoresession", Namespace: ns, Name: name,
		Timeout: timeout, Every: every, Progress: progress, Out: out,
		Watch: c.Stash.RestoreSessions(ns).Watch,
		Get: func(ctx context.Context) (sessionState, error) {
			rs, err := c.Stash.RestoreSessions(ns).Get(ctx, name)
			if err != nil {
				return sessionState{}, err
			}
			st := rs.Status
			out := sessionState{Phase: string(st.Phase), Message: st.Message, Duration: st.SessionDuration, Progress: st.Progress}
			if st.StartTime != nil {
				t := st.StartTime.Time
				out.Start = &t
			}
			switch st.Phase {
			case stashv1beta1.RestoreSucceeded:
				out.Succeeded = true
			case stashv1beta1.RestoreFailed, stashv1beta1.RestoreInvalid, stashv1beta1.RestoreUnknown:
				out.Failed = true
			}
			return out, nil
		},
	}
}

// WaitBackupSession waits until a BackupSession ends, showing progress on progress.
func WaitBackupSession(ctx context.Context, c *Clients, ns, name string, timeout, every time.Duration, progress, out io.Writer) error {
	return backupSessionWait(c, ns, name, timeout, every, progress, out).Run(ctx)
}

// WaitRestoreSession waits until a RestoreSession ends, showing progress on progress.
func WaitRestoreSession(ctx context.Context, c *Clients, ns, name string, timeout, every time.Duration, progress, out io.Writer) error {
	return restoreSessionWait(c, ns, name, timeout, every, progress, out).Run(ctx)
}
