package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

const (
	token      = "Bearer s3cr3t-h00k-t0ken"
	queryToken = "q-s3cr3t-value"
)

func TestShouldRun(t *testing.T) {
	for _, tc := range []struct {
		policy                   stashv1beta1.HookExecutionPolicy
		succeeded, final, should bool
	}{
		{"", true, false, true},
		{"", false, false, true},
		{"", false, true, true},
		{stashv1beta1.ExecuteAlways, true, true, true},
		{stashv1beta1.ExecuteAlways, false, false, true},
		{stashv1beta1.ExecuteOnSuccess, true, false, true},
		{stashv1beta1.ExecuteOnSuccess, true, true, true},
		{stashv1beta1.ExecuteOnSuccess, false, true, false},
		{stashv1beta1.ExecuteOnSuccess, false, false, false},
		{stashv1beta1.ExecuteOnFailure, false, false, true},
		{stashv1beta1.ExecuteOnFailure, false, true, true},
		{stashv1beta1.ExecuteOnFailure, true, true, false},
		{stashv1beta1.ExecuteOnFinalRetryFailure, false, true, true},
		{stashv1beta1.ExecuteOnFinalRetryFailure, false, false, false},
		{stashv1beta1.ExecuteOnFinalRetryFailure, true, true, false},
		{stashv1beta1.ExecuteOnFinalRetryFailure, true, false, false},
	} {
		if got := ShouldRun(tc.policy, tc.succeeded, tc.final); got != tc.should {
			t.Errorf("ShouldRun(%q, succeeded=%v, final=%v) = %v, want %v", tc.policy, tc.succeeded, tc.final, got, tc.should)
		}
	}
}

func TestCheck(t *testing.T) {
	exec := &corev1.ExecAction{Command: []string{"sh", "-c", "true"}}
	get := func(p intstr.IntOrString, s corev1.URIScheme) *corev1.HTTPGetAction {
		return &corev1.HTTPGetAction{Path: "/x", Port: p, Scheme: s}
	}
	for _, tc := range []struct {
		name        string
		h           stashv1beta1.Handler
		execAllowed bool
		want        error
		says        string
	}{
		{"nothing", stashv1beta1.Handler{}, true, ErrNoAction, ""},
		{"two actions", stashv1beta1.Handler{Exec: exec, HTTPGet: get(intstr.FromInt32(80), "")}, true, ErrManyActions, "exec, httpGet"},
		{"all four", stashv1beta1.Handler{Exec: exec, HTTPGet: get(intstr.FromInt32(80), ""),
			HTTPPost: &stashv1beta1.HTTPPostAction{Port: intstr.FromInt32(80)}, TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(1)}}, true, ErrManyActions, "tcpSocket"},
		{"exec allowed", stashv1beta1.Handler{Exec: exec, ContainerName: "mariadb"}, true, nil, ""},
		{"exec without opt-in", stashv1beta1.Handler{Exec: exec}, false, ErrExecNotAllowed,
			"`kubectl stash agent apply --target appbinding/mysql --hook-exec-pod POD`"},
		{"exec without a command", stashv1beta1.Handler{Exec: &corev1.ExecAction{}}, true, ErrNoCommand, ""},
		{"httpGet", stashv1beta1.Handler{HTTPGet: get(intstr.FromInt32(8080), "")}, false, nil, ""},
		{"httpGet HTTPS", stashv1beta1.Handler{HTTPGet: get(intstr.FromInt32(8443), corev1.URISchemeHTTPS)}, false, nil, ""},
		{"a port number as a string", stashv1beta1.Handler{HTTPGet: get(intstr.FromString("8080"), "")}, false, nil, ""},
		{"a named port", stashv1beta1.Handler{HTTPGet: get(intstr.FromString("http"), "")}, false, ErrNamedPort, "give its number"},
		{"no port", stashv1beta1.Handler{HTTPGet: get(intstr.FromString(""), "")}, false, ErrBadPort, ""},
		{"port 0", stashv1beta1.Handler{HTTPGet: get(intstr.FromInt32(0), "")}, false, ErrBadPort, ""},
		{"port 65536", stashv1beta1.Handler{HTTPGet: get(intstr.FromInt32(65536), "")}, false, ErrBadPort, "65536"},
		{"scheme FTP", stashv1beta1.Handler{HTTPGet: get(intstr.FromInt32(21), "FTP")}, false, ErrBadScheme, `"FTP"`},
		{"httpPost", stashv1beta1.Handler{HTTPPost: &stashv1beta1.HTTPPostAction{Port: intstr.FromInt32(80), Body: "x"}}, false, nil, ""},
		{"httpPost body and form", stashv1beta1.Handler{HTTPPost: &stashv1beta1.HTTPPostAction{Port: intstr.FromInt32(80), Body: "x",
			Form: []stashv1beta1.FormEntry{{Key: "a", Values: []string{"b"}}}}}, false, ErrBodyAndForm, ""},
		{"httpPost named port", stashv1beta1.Handler{HTTPPost: &stashv1beta1.HTTPPostAction{Port: intstr.FromString("web")}}, false, ErrNamedPort, `"web"`},
		{"httpPost bad scheme", stashv1beta1.Handler{HTTPPost: &stashv1beta1.HTTPPostAction{Port: intstr.FromInt32(80), Scheme: "gopher"}}, false, ErrBadScheme, ""},
		{"tcpSocket", stashv1beta1.Handler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(3306)}}, false, nil, ""},
		{"tcpSocket named port", stashv1beta1.Handler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("mysql")}}, false, ErrNamedPort, `"mysql"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.h, tc.execAllowed, "mysql")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Check = %q, does not say %q", err, tc.says)
			}
		})
	}
}

// hostPortOf splits a test server's URL into its host and numeric port.
func hostPortOf(t *testing.T, rawURL string) (string, int32) {
	t.Helper()
	hp := strings.TrimPrefix(strings.TrimPrefix(rawURL, "http://"), "https://")
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, int32(n)
}

func noSecrets(t *testing.T, s string) {
	t.Helper()
	for _, x := range []string{token, "s3cr3t-h00k-t0ken", queryToken} {
		if strings.Contains(s, x) {
			t.Errorf("%q shows a secret (%q)", s, x)
		}
	}
}

func authHeader() []corev1.HTTPHeader {
	return []corev1.HTTPHeader{{Name: "Authorization", Value: token}, {Name: "X-Hook", Value: "flush"}}
}

func TestHTTPGet(t *testing.T) {
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the header reached another host")
		}
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != token || r.Header.Get("X-Hook") != "flush" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/flush":
			if r.URL.Query().Get("token") != queryToken {
				http.Error(w, "no query", http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, "flushed")
		case "/fail":
			// Echoes what it got, as debugging endpoints do.
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "cannot proceed:\n auth=%s query=%s", r.Header.Get("Authorization"), r.URL.RawQuery)
		case "/big":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, strings.Repeat("overloaded ", 1000))
		case "/moved":
			http.Redirect(w, r, "/flush?token="+queryToken, http.StatusFound)
		case "/elsewhere":
			http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
		case "/empty":
			w.WriteHeader(http.StatusNotFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	host, port := hostPortOf(t, srv.URL)
	base := "http://" + net.JoinHostPort(host, strconv.Itoa(int(port)))

	run := func(path string, env Env) (Result, error) {
		return Run(context.Background(), stashv1beta1.Handler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(port), HTTPHeaders: authHeader(),
		}}, env)
	}
	env := Env{Host: host}

	res, err := run("/flush?token="+queryToken, env)
	if err != nil {
		t.Fatalf("flush: %v", err)
	}
	if want := "httpGet " + base + "/flush answered 200 OK"; res.Summary != want {
		t.Errorf("summary %q, want %q", res.Summary, want)
	}
	noSecrets(t, res.Summary)

	// The Env's host may carry the database's port; the handler's port wins.
	if _, err := run("flush?token="+queryToken, Env{Host: net.JoinHostPort(host, "3306")}); err != nil {
		t.Errorf("env host with a port, path without a slash: %v", err)
	}

	_, err = run("/fail?token="+queryToken, env)
	if err == nil || !strings.Contains(err.Error(), "answered 500 Internal Server Error: cannot proceed: auth=") {
		t.Errorf("a 500 does not fail with its status and body: %v", err)
	} else {
		noSecrets(t, err.Error())
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("the error is not one line: %q", err)
		}
	}

	_, err = run("/big", env)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "overloaded") {
		t.Errorf("a 503 does not fail with its status and body: %v", err)
	} else if len(err.Error()) > 350 {
		t.Errorf("the body is not cut (%d bytes): %q", len(err.Error()), err)
	}

	_, err = run("/empty", env)
	if err == nil || err.Error() != "httpGet "+base+"/empty answered 404 Not Found" {
		t.Errorf("a 404 without a body: %v", err)
	}

	res, err = run("/moved", env)
	if err != nil || !strings.Contains(res.Summary, "/moved answered 200 OK") {
		t.Errorf("a redirect on the same host is not followed to its 200: %v %v", res, err)
	}

	res, err = run("/elsewhere", env)
	if err != nil || !strings.HasSuffix(res.Summary, "/elsewhere answered 307 Temporary Redirect (a redirect to another host is not followed)") {
		t.Errorf("a redirect to another host is not the answer: %v %v", res, err)
	}
	if otherHits.Load() != 0 {
		t.Errorf("a redirect to another host was followed")
	}
	noSecrets(t, res.Summary)

	// The handler's host wins over the Env's.
	_, err = Run(context.Background(), stashv1beta1.Handler{HTTPGet: &corev1.HTTPGetAction{
		Host: host, Path: "/flush?token=" + queryToken, Port: intstr.FromInt32(port), HTTPHeaders: authHeader(),
	}}, Env{Host: "unresolvable.invalid"})
	if err != nil {
		t.Errorf("the handler's host: %v", err)
	}

	_, err = run("/flush", Env{})
	if !errors.Is(err, ErrNoHost) {
		t.Errorf("no host anywhere: %v", err)
	}

	// Nothing listens: the client's error quotes the URL, query included.
	dead := freePort(t)
	_, err = Run(context.Background(), stashv1beta1.Handler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/flush?token=" + queryToken, Port: intstr.FromInt32(dead), HTTPHeaders: authHeader(),
	}}, Env{Host: "127.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("nothing listening: %v", err)
	} else {
		noSecrets(t, err.Error())
	}
}

func TestHTTPSWithoutVerification(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("not TLS")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	host, port := hostPortOf(t, srv.URL)
	res, err := Run(context.Background(), stashv1beta1.Handler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/ready", Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTPS,
	}}, Env{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Summary, "httpGet https://") || !strings.HasSuffix(res.Summary, "/ready answered 204 No Content") {
		t.Errorf("summary %q", res.Summary)
	}
}

func TestHTTPPost(t *testing.T) {
	type got struct{ ctype, body, auth string }
	seen := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "want POST", http.StatusMethodNotAllowed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		seen <- got{r.Header.Get("Content-Type"), string(b), r.Header.Get("Authorization")}
		if r.URL.Path == "/reject" {
			http.Error(w, "rejected", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	host, port := hostPortOf(t, srv.URL)
	post := func(a stashv1beta1.HTTPPostAction) (Result, error) {
		a.Port = intstr.FromInt32(port)
		a.HTTPHeaders = authHeader()
		return Run(context.Background(), stashv1beta1.Handler{HTTPPost: &a}, Env{Host: host})
	}

	res, err := post(stashv1beta1.HTTPPostAction{Path: "/lock", Body: `{"tables":"all"}`})
	if err != nil {
		t.Fatal(err)
	}
	if g := <-seen; g.body != `{"tables":"all"}` || g.auth != token {
		t.Errorf("the server got %+v", g)
	}
	if !strings.HasSuffix(res.Summary, "/lock answered 200 OK") || !strings.HasPrefix(res.Summary, "httpPost http://") {
		t.Errorf("summary %q", res.Summary)
	}

	_, err = post(stashv1beta1.HTTPPostAction{Path: "/form", Form: []stashv1beta1.FormEntry{
		{Key: "db", Values: []string{"shop", "crm"}}, {Key: "mode", Values: []string{"read only"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if g := <-seen; g.ctype != "application/x-www-form-urlencoded" || g.body != "db=shop&db=crm&mode=read+only" {
		t.Errorf("the server got %+v", g)
	}

	_, err = post(stashv1beta1.HTTPPostAction{Path: "/reject", Body: "x"})
	<-seen
	if err == nil || !strings.Contains(err.Error(), "answered 403 Forbidden: rejected") {
		t.Errorf("a 403: %v", err)
	} else {
		noSecrets(t, err.Error())
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	host, port := hostPortOf(t, srv.URL)
	h := stashv1beta1.Handler{HTTPGet: &corev1.HTTPGetAction{Path: "/slow?token=" + queryToken, Port: intstr.FromInt32(port), HTTPHeaders: authHeader()}}

	start := time.Now()
	_, err := Run(context.Background(), h, Env{Host: host, Timeout: 300 * time.Millisecond})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timeout did not bound the hook: %s", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Errorf("timeout: %v", err)
	} else {
		noSecrets(t, err.Error())
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err = Run(ctx, h, Env{Host: host})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("cancel: %v", err)
	}
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return int32(port)
}

func TestTCPSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	port := int32(l.Addr().(*net.TCPAddr).Port)
	res, err := Run(context.Background(), stashv1beta1.Handler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}, Env{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	<-accepted
	if want := fmt.Sprintf("tcpSocket 127.0.0.1:%d accepted a connection", port); res.Summary != want {
		t.Errorf("summary %q, want %q", res.Summary, want)
	}
	// A port number given as a string, the host on the handler.
	if _, err := Run(context.Background(), stashv1beta1.Handler{TCPSocket: &corev1.TCPSocketAction{
		Host: "127.0.0.1", Port: intstr.FromString(strconv.Itoa(int(port)))}}, Env{}); err != nil {
		t.Errorf("string port: %v", err)
	} else {
		<-accepted
	}

	dead := freePort(t)
	_, err = Run(context.Background(), stashv1beta1.Handler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(dead)}}, Env{Host: "127.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("tcpSocket 127.0.0.1:%d: ", dead)) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("nothing listening: %v", err)
	}
}

// fakeExecer stands in for a Pod: only Run's dispatch is under test here.
type fakeExecer struct {
	container string
	command   []string
	stdout    string
	stderr    string
	err       error
	hang      bool
}

func (f *fakeExecer) Exec(ctx context.Context, container string, command []string, stdout, stderr io.Writer) error {
	f.container, f.command = container, command
	io.WriteString(stdout, f.stdout)
	io.WriteString(stderr, f.stderr)
	if f.hang {
		select {} // ignores ctx, as a broken Execer might
	}
	return f.err
}

type exitErr int

func (e exitErr) Error() string   { return fmt.Sprintf("command terminated with exit code %d", int(e)) }
func (e exitErr) ExitStatus() int { return int(e) }

func TestExecDispatch(t *testing.T) {
	cmd := []string{"sh", "-c", "mysql -p" + queryToken + " -e 'FLUSH TABLES'"}
	h := stashv1beta1.Handler{Exec: &corev1.ExecAction{Command: cmd}, ContainerName: "mariadb"}

	_, err := Run(context.Background(), h, Env{})
	if !errors.Is(err, ErrExecNotAllowed) {
		t.Errorf("exec without an Execer: %v", err)
	}

	ok := &fakeExecer{stdout: "ok\n"}
	res, err := Run(context.Background(), h, Env{Exec: ok})
	if err != nil {
		t.Fatal(err)
	}
	if ok.container != "mariadb" || strings.Join(ok.command, "\x00") != strings.Join(cmd, "\x00") {
		t.Errorf("the Execer got container %q, command %q", ok.container, ok.command)
	}
	if res.Summary != "exec sh in container mariadb exited 0" || res.Output != "ok\n" {
		t.Errorf("result %+v", res)
	}

	stderr := "one\ntwo\nthree\n\nfour\nfive\nsix\nboom: " + strings.Repeat("x", 500) + "\n"
	_, err = Run(context.Background(), h, Env{Exec: &fakeExecer{stderr: stderr, err: fmt.Errorf("wrapped: %w", exitErr(3))}})
	if err == nil {
		t.Fatal("exit 3 succeeded")
	}
	var code interface{ ExitStatus() int }
	if !errors.As(err, &code) || code.ExitStatus() != 3 {
		t.Errorf("the error does not carry the exit status: %v", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "exec sh in container mariadb exited with code 3: stderr: three | four | five | six | boom: xxx") {
		t.Errorf("exit 3: %q", msg)
	}
	if strings.Contains(msg, "two") || len(msg) > 450 {
		t.Errorf("stderr is not cut to its last lines (%d bytes): %q", len(msg), msg)
	}
	noSecrets(t, msg)

	_, err = Run(context.Background(), stashv1beta1.Handler{Exec: &corev1.ExecAction{Command: []string{"true"}}},
		Env{Exec: &fakeExecer{err: exitErr(1)}})
	if err == nil || err.Error() != "exec true exited with code 1 (no stderr)" {
		t.Errorf("exit 1 without stderr: %v", err)
	}

	forbidden := errors.New(`pods "mysql-0" is forbidden`)
	_, err = Run(context.Background(), h, Env{Exec: &fakeExecer{err: forbidden}})
	if !errors.Is(err, forbidden) || !strings.HasPrefix(err.Error(), "exec sh in container mariadb: ") {
		t.Errorf("an exec that did not run: %v", err)
	}

	start := time.Now()
	_, err = Run(context.Background(), h, Env{Exec: &fakeExecer{hang: true, stdout: "partial"}, Timeout: 200 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("an Execer that ignores ctx is not bounded: %v after %s", err, time.Since(start))
	}
}
