package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"
)

// An API server that refuses the exec: the WebSocket GET is checked as
// "get", the SPDY POST as "create". The refusal stays typed, with the last
// attempt's words, and the request names the Pod, container and command.
func TestPodExecerRefusedByTheAPIServer(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	var query url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		query = r.URL.Query()
		mu.Unlock()
		verb := "create"
		if r.Method == http.MethodGet {
			verb = "get"
		}
		st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
			Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden,
			Message: fmt.Sprintf(`pods "db-0" is forbidden: User "system:serviceaccount:ns:agent" cannot %s resource "pods/exec" in API group "" in the namespace "ns"`, verb)}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()

	ex, err := NewPodExecer(&rest.Config{Host: srv.URL, BearerToken: "t0ken"}, "ns", "db-0")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	err = ex.Exec(context.Background(), "mariadb", []string{"sh", "-c", "echo ok"}, &out, &errb)
	if !apierrors.IsForbidden(err) {
		t.Fatalf("not Forbidden: %v", err)
	}
	if want := `exec in pod ns/db-0: pods "db-0" is forbidden: User "system:serviceaccount:ns:agent" cannot create resource`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start %q", err, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"GET /api/v1/namespaces/ns/pods/db-0/exec", "POST /api/v1/namespaces/ns/pods/db-0/exec"}; !slices.Equal(seen, want) {
		t.Errorf("requests %v, want %v (WebSocket, then SPDY)", seen, want)
	}
	if !slices.Equal(query["command"], []string{"sh", "-c", "echo ok"}) || query.Get("container") != "mariadb" ||
		query.Get("stdout") != "true" || query.Get("stderr") != "true" || query.Has("stdin") && query.Get("stdin") != "false" {
		t.Errorf("query %v", query)
	}
}

func TestTypedRefusal(t *testing.T) {
	forbidden := func(verb string) error {
		return apierrors.NewForbidden(schemaPods, "db-0", fmt.Errorf("User \"u\" cannot %s resource \"pods/exec\"", verb))
	}
	spdy := func(e error) error { return errors.New("unable to upgrade connection: " + e.Error()) }
	ws := func(e error) error { return &httpstream.UpgradeFailureError{Cause: e} }

	err := typedRefusal(ws(forbidden("get")), spdy(forbidden("create")))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "cannot create") {
		t.Errorf("both forbidden: %v", err)
	}
	notFound := apierrors.NewNotFound(schemaPods, "db-0")
	if err := typedRefusal(ws(forbidden("get")), spdy(notFound)); apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
		t.Errorf("refused for different reasons, yet typed: %v", err)
	}
	if err := typedRefusal(ws(notFound), spdy(notFound)); !apierrors.IsNotFound(err) {
		t.Errorf("both not found: %v", err)
	}
	plain := errors.New("connection reset")
	if err := typedRefusal(errors.New("dial: refused"), plain); err != plain {
		t.Errorf("no upgrade failure: %v", err)
	}
	if err := typedRefusal(ws(errors.New("bad handshake")), plain); err != plain {
		t.Errorf("an untyped upgrade failure: %v", err)
	}
}

var schemaPods = schema.GroupResource{Resource: "pods"}
