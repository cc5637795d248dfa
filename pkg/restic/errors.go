package restic

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors, matched with errors.Is on an *Error.
var (
	ErrRepoNotExist     = errors.New("repository does not exist")              // exit 10
	ErrLocked           = errors.New("repository is locked")                   // exit 11
	ErrWrongPassword    = errors.New("wrong password or no key found")         // exit 12
	ErrInterrupted      = errors.New("interrupted")                            // exit 130 or context done
	ErrSnapshotNotFound = errors.New("snapshot not found")                     // unknown snapshot ID
	ErrPathNotFound     = errors.New("path not found in snapshot")             // dump of an unknown file
	ErrCommandFailed    = errors.New("backup command failed")                  // --stdin-from-command child failed
	ErrBackend          = errors.New("backend unreachable")                    // best effort, from stderr
	ErrIncomplete       = errors.New("snapshot created but source incomplete") // exit 3
	ErrCertificate      = errors.New("backend certificate not trusted")        // x509 verify failure; restic would retry for 15 min
	ErrBackendTimeout   = errors.New("backend failed for longer than allowed") // Repo.BackendTimeout passed while restic retried
	ErrStalled          = errors.New("the stream stalled")                     // Repo.StallTimeout passed with nothing moving
)

// Bounds on what is kept of restic's stderr.
const (
	maxStderr      = 4 << 10  // Error.Stderr
	maxStderrLine  = 64 << 10 // longer lines are dropped, not cut
	maxKeptLine    = 1 << 10  // each kept line, cut after redaction
	maxErrorDetail = 300      // the detail in Error()
)

// Error is a failed restic run.
type Error struct {
	Op       string // restic command, e.g. "backup"
	ExitCode int    // -1 when restic did not exit normally
	Stderr   string // last lines of stderr, redacted, at most ~4 KiB
	Err      error  // the matching sentinel(s); nil when none matched

	detail string // one-line reason, redacted
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("restic " + e.Op + ": ")
	if e.ExitCode >= 0 {
		b.WriteString("exit " + strconv.Itoa(e.ExitCode))
	} else {
		b.WriteString("did not exit normally")
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.detail != "" {
		b.WriteString(" (" + e.detail + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// redactor hides secret values. Values of 3 characters or fewer are left
// alone: replacing them would garble ordinary text.
type redactor struct{ r *strings.Replacer }

func newRedactor(repo *Repo, extra map[string]string) redactor {
	var secrets []string
	add := func(v string) {
		// A multi-line secret (a key) is also hidden line by line, since
		// stderr is handled a line at a time.
		for _, s := range append([]string{v}, strings.Split(v, "\n")...) {
			s = strings.TrimSpace(s)
			if len(s) > 3 {
				secrets = append(secrets, s)
			}
		}
	}
	for _, m := range []map[string]string{repo.Env, extra} {
		for _, v := range m {
			add(v)
		}
	}
	add(urlPassword(repo.URL))
	if len(secrets) == 0 {
		return redactor{}
	}
	// Longest first, so a secret containing another is hidden whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	secrets = slices.Compact(secrets)
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, "***")
	}
	return redactor{strings.NewReplacer(pairs...)}
}

func (r redactor) redact(s string) string {
	if r.r == nil {
		return s
	}
	return r.r.Replace(s)
}

// urlPassword returns the password of a URL such as
// "rest:https://user:pass@host/", both raw and unescaped, joined by a
// newline so that each is redacted.
func urlPassword(repoURL string) string {
	_, rest, ok := strings.Cut(repoURL, "://")
	if !ok {
		return ""
	}
	host, _, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(host, "@")
	if at < 0 {
		return ""
	}
	_, pass, ok := strings.Cut(host[:at], ":")
	if !ok {
		return ""
	}
	if u, err := url.PathUnescape(pass); err == nil && u != pass {
		return pass + "\n" + u
	}
	return pass
}

// stderrSink keeps a bounded, redacted tail of restic's stderr and notes
// what it says, line by line, so nothing unbounded is ever held.
type stderrSink struct {
	lineSplitter
	red      redactor
	lines    []string
	size     int
	exitMsg  string // last exit_error message
	lastLine string // last plain line from restic itself
	seen     map[error]bool
	// fatal is a line that no retry can fix (an untrusted certificate, a
	// backend down past the budget); onFatal stops restic instead of
	// letting it retry for minutes, and fatalErr classifies the stop.
	fatal    string
	fatalErr error
	onFatal  func()
	// stalled says why the stall watch stopped the run; set by the watch
	// before it stops anything, read once restic has exited.
	stalled string
	// backendBudget bounds a streak of backend retries; 0 means restic's own.
	backendBudget time.Duration
	now           func() time.Time
	streakStart   time.Time
	lastRetry     time.Time
	lastDelay     time.Duration // the wait restic announced at lastRetry
}

func newStderrSink(red redactor) *stderrSink {
	s := &stderrSink{red: red, seen: map[error]bool{}, now: time.Now}
	s.lineSplitter = lineSplitter{max: maxStderrLine, emit: s.line}
	return s
}

func (s *stderrSink) line(raw []byte, tooLong bool) {
	if tooLong {
		s.keep("[long line dropped]")
		return
	}
	// Redact before anything is cut, so no part of a secret survives.
	text := s.red.redact(cleanLine(string(raw)))
	if text == "" {
		return
	}
	msg := text
	if ev, err := DecodeLine(raw); err == nil && ev.Error != nil {
		// Keep the message, not its JSON: it reads better, and a secret
		// may be escaped differently inside JSON.
		msg = s.red.redact(ev.Error.Message)
		text = msg
		if ev.Type == "exit_error" {
			s.exitMsg = msg
		}
	}
	// The backup command's own stderr is relayed as "subprocess NAME: ...";
	// it is kept but must not drive the classification.
	if !strings.HasPrefix(text, "subprocess ") {
		s.classify(msg)
		s.lastLine = msg
		low := strings.ToLower(msg)
		if strings.Contains(low, "x509:") || strings.Contains(low, "tls: failed to verify") {
			s.stop(ErrCertificate, msg)
		}
		if strings.Contains(low, "returned error, retrying after") {
			s.backendRetry(msg)
		}
		if strings.Contains(low, "operation successful after") {
			s.streakStart = time.Time{} // the backend answered again
		}
	}
	s.keep(text)
}

// stop ends the run at a line that waiting will not fix.
func (s *stderrSink) stop(err error, msg string) {
	if s.fatal != "" {
		return
	}
	s.fatal, s.fatalErr = msg, err
	if s.onFatal != nil {
		s.onFatal()
	}
}

// backendRetry tracks a streak of backend retries, and an outage longer
// than the budget stops restic, which would otherwise retry for 15
// minutes. restic doubles its wait after each failure (1s, 2s, 4s, ... with
// jitter), so consecutive retry lines drift further apart than any fixed
// window: a retry belongs to the streak when it came within the wait restic
// announced for the previous one, plus the budget for the attempt itself.
// restic's "operation successful" line ends a streak.
func (s *stderrSink) backendRetry(msg string) {
	if s.backendBudget <= 0 {
		return
	}
	now := s.now()
	if s.streakStart.IsZero() || now.Sub(s.lastRetry) > s.lastDelay+s.backendBudget {
		s.streakStart = now
	}
	s.lastRetry, s.lastDelay = now, retryDelay(msg)
	if d := now.Sub(s.streakStart); d >= s.backendBudget {
		s.stop(ErrBackendTimeout, fmt.Sprintf("the backend has failed for %s, more than the %s allowed: %s", d.Round(time.Second), s.backendBudget, msg))
	}
}

// retryDelay reads the wait from restic's "X returned error, retrying
// after 1.5s: ..." line; 0 when it cannot.
func retryDelay(msg string) time.Duration {
	_, rest, ok := strings.Cut(msg, "retrying after ")
	if !ok {
		return 0
	}
	word, _, _ := strings.Cut(rest, ":")
	d, err := time.ParseDuration(strings.TrimSpace(word))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

func (s *stderrSink) keep(text string) {
	text = truncate(text, maxKeptLine)
	s.lines = append(s.lines, text)
	s.size += len(text) + 1
	for s.size > maxStderr && len(s.lines) > 1 {
		s.size -= len(s.lines[0]) + 1
		s.lines = s.lines[1:]
	}
}

// Patterns in restic's messages, lower-cased.
var stderrPatterns = []struct {
	err  error
	subs []string
}{
	// restic was signalled by someone else than us.
	{ErrInterrupted, []string{"signal interrupt received", "signal terminated received"}},
	{ErrCommandFailed, []string{"command failed:", "failed to start command"}},
	{ErrSnapshotNotFound, []string{"no matching id found", "no snapshot found", "failed to find snapshot"}},
	{ErrPathNotFound, []string{"not found in snapshot"}},
	{ErrBackend, []string{"connection refused", "no such host", "timeout", "timed out",
		"network is unreachable", "connection reset by peer", "x509:", "tls:"}},
}

func (s *stderrSink) classify(msg string) {
	low := strings.ToLower(msg)
	for _, p := range stderrPatterns {
		for _, sub := range p.subs {
			if strings.Contains(low, sub) {
				s.seen[p.err] = true
			}
		}
	}
}

// newError classifies a failed run: a done context first (restic then
// exits 1), then the exit code, then what stderr said.
func (s *stderrSink) newError(ctx context.Context, op string, code int) *Error {
	var errs []error
	switch {
	case s.fatal != "":
		errs = append(errs, s.fatalErr)
		if errors.Is(s.fatalErr, ErrBackendTimeout) {
			errs = append(errs, ErrBackend)
		}
		s.exitMsg = s.fatal
	case s.stalled != "":
		// restic's own message (exitMsg), if it gave one once the dump
		// was stopped, stays the detail: it names the cause.
		errs = append(errs, fmt.Errorf("%w: %s", ErrStalled, s.stalled))
	case ctx.Err() != nil:
		errs = append(errs, ErrInterrupted, context.Cause(ctx))
	case code == 10:
		errs = append(errs, ErrRepoNotExist)
	case code == 11:
		errs = append(errs, ErrLocked)
	case code == 12:
		errs = append(errs, ErrWrongPassword)
	case code == 130:
		errs = append(errs, ErrInterrupted)
	case code == 3:
		errs = append(errs, ErrIncomplete)
	default:
		for _, p := range stderrPatterns {
			if p.err == ErrCommandFailed && op != "backup" {
				continue
			}
			if s.seen[p.err] {
				errs = append(errs, p.err)
				break
			}
		}
	}
	if s.seen[ErrBackend] && !slices.Contains(errs, ErrBackend) {
		errs = append(errs, ErrBackend)
	}

	detail := s.exitMsg
	if detail == "" {
		detail = s.lastLine
	}
	// One line; redacted again since joining may rebuild a secret
	// that held runs of spaces.
	detail = s.red.redact(strings.Join(strings.Fields(detail), " "))
	detail = truncate(detail, maxErrorDetail)
	return &Error{
		Op:       op,
		ExitCode: code,
		Stderr:   strings.Join(s.lines, "\n"),
		Err:      joinSentinels(errs),
		detail:   detail,
	}
}

// joinSentinels wraps each error, printing them as "a: b".
func joinSentinels(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	format := strings.TrimSuffix(strings.Repeat("%w: ", len(errs)), ": ")
	args := make([]any, len(errs))
	for i, e := range errs {
		args[i] = e
	}
	return fmt.Errorf(format, args...)
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// cleanLine drops terminal control sequences (restic writes "\x1b[2K"
// before some messages) and other control characters.
func cleanLine(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b:
			// Skip "ESC [ params final".
			if i+1 < len(s) && s[i+1] == '[' {
				i += 2
				for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
					i++
				}
			}
		case c == '\t':
			b.WriteByte(' ')
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}
