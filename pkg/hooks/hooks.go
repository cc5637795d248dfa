// Package hooks runs Stash hooks (preBackup, postBackup, preRestore,
// postRestore) from the agent: an exec in the database's Pod, an HTTP GET or
// POST, or a TCP connection.
//
// What a hook carries may be secret: header values (tokens), query strings,
// command arguments. None of them appears in a Result or an error: messages
// name the URL without its query and an exec by its program only, and a
// response body quoted in an error has the header and query values cut out.
package hooks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// DefaultTimeout bounds one hook when Env.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Why the agent cannot honour a handler. Check and Run wrap them; test with errors.Is.
var (
	ErrNoAction       = errors.New("the hook sets none of exec, httpGet, httpPost, tcpSocket")
	ErrManyActions    = errors.New("the hook sets more than one of exec, httpGet, httpPost, tcpSocket")
	ErrExecNotAllowed = errors.New("exec hooks are not allowed for this agent")
	ErrNoCommand      = errors.New("the exec hook has no command")
	ErrNamedPort      = errors.New("a port given by name cannot be resolved without a pod")
	ErrBadPort        = errors.New("the port is not a number from 1 to 65535")
	ErrBadScheme      = errors.New("the scheme is neither HTTP nor HTTPS")
	ErrBodyAndForm    = errors.New("the httpPost hook sets both body and form")
	ErrNoHost         = errors.New("the hook gives no host and the agent knows none")
)

// Execer runs a command in a container of the Pod it was made for. It
// returns nil when the command exited 0; when it ran and exited otherwise,
// an error with an `ExitStatus() int` method (as client-go's
// exec.CodeExitError), possibly wrapped.
type Execer interface {
	Exec(ctx context.Context, container string, command []string, stdout, stderr io.Writer) error
}

// Dialer opens connections; *net.Dialer is one.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Env is what a hook runs with.
type Env struct {
	// Host is used by httpGet, httpPost and tcpSocket when the handler gives
	// none: the database's host from its AppBinding. A port on it is ignored.
	Host string
	// HTTP sends httpGet and httpPost. nil: a client that dials with Dialer,
	// uses no proxy or keep-alives, and does not verify HTTPS certificates
	// (as the kubelet's HTTP probes). Either way redirects are followed only
	// to the same host, as the kubelet's probes do, so header values are
	// never sent elsewhere; a redirect elsewhere counts as the answer.
	HTTP *http.Client
	// Dialer opens tcpSocket connections (and the default HTTP client's).
	// nil: a net.Dialer.
	Dialer Dialer
	// Exec runs exec hooks. nil: exec hooks are not allowed (the user did
	// not opt in with --hook-exec-pod).
	Exec Execer
	// Timeout bounds each hook; 0 is DefaultTimeout.
	Timeout time.Duration
}

// Result is what a hook that succeeded did.
type Result struct {
	// Summary is one line for logs, Events and statuses, e.g.
	// "httpGet http://db:8080/flush answered 200 OK".
	Summary string
	// Output is the end of an exec hook's stdout (at most 1 KiB); empty for
	// the other actions.
	Output string
}

func (r Result) String() string { return r.Summary }

// ShouldRun says whether a post hook with this policy runs after a session
// that succeeded or not. "" is Always; OnFinalRetryFailure runs only after a
// failure that no retry follows. An unknown policy runs, as in Stash.
func ShouldRun(policy stashv1beta1.HookExecutionPolicy, succeeded, finalAttempt bool) bool {
	switch policy {
	case stashv1beta1.ExecuteOnSuccess:
		return succeeded
	case stashv1beta1.ExecuteOnFailure:
		return !succeeded
	case stashv1beta1.ExecuteOnFinalRetryFailure:
		return !succeeded && finalAttempt
	default:
		return true
	}
}

// Check says why the agent cannot honour h: no action or several, an exec
// without the user's opt-in (the error names the command that gives it, for
// appBinding), an empty command, a port by name or out of range, a scheme
// other than HTTP or HTTPS, or a POST with both body and form. nil means Run
// can try it.
func Check(h stashv1beta1.Handler, execAllowed bool, appBinding string) error {
	var set []string
	if h.Exec != nil {
		set = append(set, "exec")
	}
	if h.HTTPGet != nil {
		set = append(set, "httpGet")
	}
	if h.HTTPPost != nil {
		set = append(set, "httpPost")
	}
	if h.TCPSocket != nil {
		set = append(set, "tcpSocket")
	}
	switch {
	case len(set) == 0:
		return ErrNoAction
	case len(set) > 1:
		return fmt.Errorf("%w: %s", ErrManyActions, strings.Join(set, ", "))
	}
	switch {
	case h.Exec != nil:
		if len(h.Exec.Command) == 0 {
			return ErrNoCommand
		}
		if !execAllowed {
			if appBinding == "" {
				appBinding = "NAME"
			}
			return fmt.Errorf("%w: allow them in one Pod with `kubectl stash agent apply --target appbinding/%s --hook-exec-pod POD`", ErrExecNotAllowed, appBinding)
		}
	case h.HTTPGet != nil:
		if _, err := port("httpGet", h.HTTPGet.Port); err != nil {
			return err
		}
		if _, err := scheme("httpGet", h.HTTPGet.Scheme); err != nil {
			return err
		}
	case h.HTTPPost != nil:
		if _, err := port("httpPost", h.HTTPPost.Port); err != nil {
			return err
		}
		if _, err := scheme("httpPost", h.HTTPPost.Scheme); err != nil {
			return err
		}
		if h.HTTPPost.Body != "" && len(h.HTTPPost.Form) > 0 {
			return ErrBodyAndForm
		}
	case h.TCPSocket != nil:
		if _, err := port("tcpSocket", h.TCPSocket.Port); err != nil {
			return err
		}
	}
	return nil
}

// port is the number of p. A number written as a string is taken, as the
// kubelet does once a name matches no container port.
func port(action string, p intstr.IntOrString) (int, error) {
	n := p.IntValue()
	if p.Type == intstr.String {
		if p.StrVal == "" {
			return 0, fmt.Errorf("%s: %w: none is given", action, ErrBadPort)
		}
		v, err := strconv.Atoi(p.StrVal)
		if err != nil {
			return 0, fmt.Errorf("%s: port %q: %w: give its number", action, p.StrVal, ErrNamedPort)
		}
		n = v
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s: port %d: %w", action, n, ErrBadPort)
	}
	return n, nil
}

func scheme(action string, s corev1.URIScheme) (string, error) {
	switch strings.ToUpper(string(s)) {
	case "", "HTTP":
		return "http", nil
	case "HTTPS":
		return "https", nil
	}
	return "", fmt.Errorf("%s: scheme %q: %w", action, oneLine(string(s), 20), ErrBadScheme)
}

// Run runs one hook, bounded by env.Timeout and ctx. The error says what
// failed without header values, query strings or command arguments.
func Run(ctx context.Context, h stashv1beta1.Handler, env Env) (Result, error) {
	if err := Check(h, env.Exec != nil, ""); err != nil {
		return Result{}, err
	}
	timeout := env.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		what string
		res  Result
		err  error
	)
	switch {
	case h.Exec != nil:
		what = "exec " + oneLine(h.Exec.Command[0], 80)
		if h.ContainerName != "" {
			what += " in container " + oneLine(h.ContainerName, 80)
		}
		res, err = runExec(rctx, what, h, env.Exec)
	case h.HTTPGet != nil:
		a := h.HTTPGet
		res, what, err = runHTTP(rctx, env, http.MethodGet, a.Scheme, a.Host, a.Port, a.Path, a.HTTPHeaders, "", nil)
	case h.HTTPPost != nil:
		a := h.HTTPPost
		res, what, err = runHTTP(rctx, env, http.MethodPost, a.Scheme, a.Host, a.Port, a.Path, a.HTTPHeaders, a.Body, a.Form)
	case h.TCPSocket != nil:
		res, what, err = runTCP(rctx, env, h.TCPSocket)
	}
	if err == nil {
		return res, nil
	}
	if rctx.Err() != nil && !errors.Is(err, ErrNoHost) {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%s: stopped: %w", what, context.Cause(ctx))
		}
		return Result{}, fmt.Errorf("%s: did not finish within %s: %w", what, timeout, context.DeadlineExceeded)
	}
	return Result{}, err
}

// bounded runs f and returns its error, or ctx's as soon as ctx ends even if
// f has not returned (an Execer or Dialer that ignores ctx).
func bounded(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func runExec(ctx context.Context, what string, h stashv1beta1.Handler, ex Execer) (Result, error) {
	stdout, stderr := &tail{max: 1 << 10}, &tail{max: 4 << 10}
	err := bounded(ctx, func() error {
		return ex.Exec(ctx, h.ContainerName, h.Exec.Command, stdout, stderr)
	})
	if err == nil {
		return Result{Summary: what + " exited 0", Output: stdout.String()}, nil
	}
	if ctx.Err() != nil {
		return Result{}, err
	}
	msg := lastLines(stderr.String(), 5)
	var code interface{ ExitStatus() int }
	if errors.As(err, &code) {
		if msg == "" {
			return Result{}, &exitError{fmt.Sprintf("%s exited with code %d (no stderr)", what, code.ExitStatus()), err}
		}
		return Result{}, &exitError{fmt.Sprintf("%s exited with code %d: stderr: %s", what, code.ExitStatus(), msg), err}
	}
	if msg != "" {
		return Result{}, fmt.Errorf("%s: %w (stderr: %s)", what, err, msg)
	}
	return Result{}, fmt.Errorf("%s: %w", what, err)
}

// exitError says how an exec hook exited, and wraps the Execer's error
// (which has the ExitStatus method) without repeating its text.
type exitError struct {
	msg string
	err error
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) Unwrap() error { return e.err }

// hostPort is host (the handler's, else the Env's without its port) and port.
func hostPort(action, handlerHost string, p intstr.IntOrString, envHost string) (string, error) {
	n, err := port(action, p)
	if err != nil {
		return "", err
	}
	host := handlerHost
	if host == "" {
		host = envHost
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return "", fmt.Errorf("%s: %w", action, ErrNoHost)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

func dialer(env Env) Dialer {
	if env.Dialer != nil {
		return env.Dialer
	}
	return &net.Dialer{}
}

func runTCP(ctx context.Context, env Env, a *corev1.TCPSocketAction) (Result, string, error) {
	addr, err := hostPort("tcpSocket", a.Host, a.Port, env.Host)
	if err != nil {
		return Result{}, "tcpSocket", err
	}
	what := "tcpSocket " + addr
	d := dialer(env)
	err = bounded(ctx, func() error {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		return Result{}, what, fmt.Errorf("%s: %w", what, err)
	}
	return Result{Summary: what + " accepted a connection"}, what, nil
}

// sameHostRedirects follows a redirect only to the first request's host, as
// the kubelet's probes do; elsewhere the redirect itself is the answer.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		return http.ErrUseLastResponse
	}
	return nil
}

func httpClient(env Env) *http.Client {
	if env.HTTP != nil {
		c := *env.HTTP
		c.CheckRedirect = sameHostRedirects
		return &c
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: dialer(env).DialContext,
			// As the kubelet's HTTPS probes: the certificate is not
			// verified. A hook proves the endpoint answered, and the
			// database's in-cluster endpoints rarely have certificates the
			// agent could verify.
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: true,
		},
		CheckRedirect: sameHostRedirects,
	}
}

func runHTTP(ctx context.Context, env Env, method string, sch corev1.URIScheme, host string, p intstr.IntOrString,
	path string, headers []corev1.HTTPHeader, body string, form []stashv1beta1.FormEntry) (Result, string, error) {
	action := "httpGet"
	if method == http.MethodPost {
		action = "httpPost"
	}
	s, _ := scheme(action, sch) // checked
	addr, err := hostPort(action, host, p, env.Host)
	if err != nil {
		return Result{}, action, err
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	ref, err := url.Parse(path)
	if err != nil {
		return Result{}, action, fmt.Errorf("%s: the path is not a URL path", action)
	}
	u := &url.URL{Scheme: s, Host: addr, Path: ref.Path, RawPath: ref.RawPath, RawQuery: ref.RawQuery}
	shown := (&url.URL{Scheme: s, Host: addr, Path: ref.Path, RawPath: ref.RawPath}).String()
	what := action + " " + shown

	var secrets []string
	for _, vs := range ref.Query() {
		secrets = append(secrets, vs...)
	}
	var rd io.Reader
	contentType := ""
	if method == http.MethodPost {
		if len(form) > 0 {
			v := url.Values{}
			for _, f := range form {
				if len(f.Values) == 0 {
					v.Add(f.Key, "")
				}
				for _, x := range f.Values {
					v.Add(f.Key, x)
				}
			}
			rd = strings.NewReader(v.Encode())
			contentType = "application/x-www-form-urlencoded"
		} else {
			rd = strings.NewReader(body)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return Result{}, what, fmt.Errorf("%s: cannot build the request", what)
	}
	req.Header.Set("User-Agent", "stash-agent-hook")
	req.Header.Set("Accept", "*/*")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, hd := range headers {
		secrets = append(secrets, hd.Value)
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	resp, err := httpClient(env).Do(req)
	if err != nil {
		// *url.Error quotes the whole URL, query included: keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Result{}, what, fmt.Errorf("%s: %s", what, redact(err.Error(), secrets))
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	status := resp.Status
	if status == "" {
		status = strconv.Itoa(resp.StatusCode)
	}
	status = oneLine(redact(status, secrets), 80)
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		sum := what + " answered " + status
		if resp.StatusCode >= 300 && resp.Header.Get("Location") != "" {
			sum += " (a redirect to another host is not followed)"
		}
		return Result{Summary: sum}, what, nil
	}
	snippet := oneLine(redact(string(head), secrets), 200)
	if snippet == "" {
		return Result{}, what, fmt.Errorf("%s answered %s", what, status)
	}
	return Result{}, what, fmt.Errorf("%s answered %s: %s", what, status, snippet)
}

// redact cuts every secret of 3 bytes or more out of s.
func redact(s string, secrets []string) string {
	for _, x := range secrets {
		if len(x) >= 3 {
			s = strings.ReplaceAll(s, x, "[redacted]")
		}
	}
	return s
}

// oneLine makes s one line of printable text of at most max bytes.
func oneLine(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }), " ")
	if len(s) <= max {
		return s
	}
	cut := max - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// lastLines is the last n non-empty lines of s, each cut to 200 bytes,
// joined with " | ".
func lastLines(s string, n int) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if l := oneLine(lines[i], 200); l != "" {
			out = append(out, l)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return strings.Join(out, " | ")
}

// tail keeps the last max bytes written to it; safe for an Execer that
// still writes after Run gave up on it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.ToValidUTF8(string(t.b), "?")
}
