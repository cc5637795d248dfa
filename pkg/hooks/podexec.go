package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
)

// podExecer runs commands in one Pod through the API server's pods/exec.
type podExecer struct {
	cfg       *rest.Config
	rc        rest.Interface
	namespace string
	pod       string
}

// NewPodExecer returns an Execer for the Pod namespace/pod, as `kubectl
// exec` does it: a WebSocket stream (GET on pods/exec), falling back to SPDY
// (POST) when the API server does not upgrade to WebSocket. The rest.Config's
// identity needs create and get on pods/exec for that Pod.
func NewPodExecer(cfg *rest.Config, namespace, pod string) (Execer, error) {
	if namespace == "" || pod == "" {
		return nil, errors.New("hooks: the exec Pod needs a namespace and a name")
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.APIPath = "/api"
	// Only URLs are built with this client; no kinds are decoded.
	c.NegotiatedSerializer = serializer.NewCodecFactory(runtime.NewScheme()).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, err
	}
	return &podExecer{cfg: c, rc: rc, namespace: namespace, pod: pod}, nil
}

func (p *podExecer) Exec(ctx context.Context, container string, command []string, stdout, stderr io.Writer) error {
	if len(command) == 0 {
		return ErrNoCommand
	}
	req := p.rc.Post().Namespace(p.namespace).Resource("pods").Name(p.pod).SubResource("exec").
		Param("stdout", "true").Param("stderr", "true")
	if container != "" {
		req = req.Param("container", container)
	}
	for _, c := range command {
		req = req.Param("command", c)
	}
	u := req.URL()
	spdy, err := remotecommand.NewSPDYExecutor(p.cfg, "POST", u)
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", p.namespace, p.pod, err)
	}
	// WebSocket must be GET (RFC 6455 section 4.1).
	ws, err := remotecommand.NewWebSocketExecutor(p.cfg, "GET", u.String())
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", p.namespace, p.pod, err)
	}
	var wsErr error
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		wsErr = err
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("exec in pod %s/%s: %w", p.namespace, p.pod, err)
	}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	var code interface{ ExitStatus() int }
	if err == nil || errors.As(err, &code) {
		return err
	}
	return fmt.Errorf("exec in pod %s/%s: %w", p.namespace, p.pod, typedRefusal(wsErr, err))
}

// typedRefusal keeps the API server's refusal (Forbidden, NotFound) as an
// API status error, so that apierrors.IsForbidden and the like work. The
// WebSocket attempt (GET) gets the refusal as a status; the SPDY fallback
// (POST) keeps only its message. When both were refused for the same
// reason (the same message up to its first ": ", e.g. `pods "x" is
// forbidden`; the verb after it differs), the error is the WebSocket's
// status with the SPDY message, the last word.
func typedRefusal(wsErr, spdyErr error) error {
	var uf *httpstream.UpgradeFailureError
	if !errors.As(wsErr, &uf) {
		return spdyErr
	}
	var st apierrors.APIStatus
	if !errors.As(uf.Cause, &st) {
		return spdyErr
	}
	msg, ok := strings.CutPrefix(spdyErr.Error(), "unable to upgrade connection: ")
	status := st.Status()
	head := func(s string) string { h, _, _ := strings.Cut(s, ": "); return h }
	if !ok || head(msg) != head(status.Message) {
		return spdyErr
	}
	status.Message = msg
	return &apierrors.StatusError{ErrStatus: status}
}
