package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// accessRecheck is how often a session waiting for access looks again:
// the agent cannot watch its own Role, so it asks.
const accessRecheck = 5 * time.Second

// errNoAccess: the agent's Role does not grant what a session needs.
var errNoAccess = errors.New("the agent's Role does not grant access")

// access checks, before a session is claimed, that the agent may read what
// it needs: the AppBinding's Secret, the Repository and its Secret. A
// session that lacks access waits Pending rather than fail, and runs once
// `kubectl stash agent apply` granted it: a GitOps user applies the
// session and the grant in either order. Only a Forbidden answer counts:
// anything else (not found, invalid) is the run's to report.
func (a *Agent) access(ctx context.Context, repo stashv1beta1.RepositoryRef) error {
	ns := repo.Namespace
	if ns == "" {
		ns = a.cfg.Namespace
	}
	fix := fmt.Sprintf("`kubectl stash agent apply --target appbinding/%s -n %s --repository %s`", a.cfg.AppBinding, a.cfg.Namespace, repoArg(repo, a.cfg.Namespace))
	if _, _, err := a.repository(ctx, repo); apierrors.IsForbidden(err) {
		return fmt.Errorf("%w to Repository %s/%s or its Secret (%v): grant it with %s; the session runs once it is granted", errNoAccess, ns, repo.Name, apiReason(err), fix)
	}
	if _, _, err := a.connection(ctx); apierrors.IsForbidden(err) {
		return fmt.Errorf("%w to AppBinding %s or its Secret (%v): grant it with `kubectl stash agent apply --target appbinding/%s -n %s`; the session runs once it is granted", errNoAccess, a.cfg.AppBinding, apiReason(err), a.cfg.AppBinding, a.cfg.Namespace)
	}
	return nil
}

func repoArg(r stashv1beta1.RepositoryRef, ns string) string {
	if r.Namespace != "" && r.Namespace != ns {
		return r.Namespace + "/" + r.Name
	}
	return r.Name
}

// apiReason is the API server's refusal without its long preamble.
func apiReason(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Message
	}
	return err.Error()
}

// accessCondition is the condition a waiting session shows; ok marks the
// wait over.
func accessCondition(err error) metav1.Condition {
	if err == nil {
		return metav1.Condition{Type: stashv1beta1.ConditionAccessGranted, Status: metav1.ConditionTrue, Reason: "Granted", Message: "the agent may read every Secret this session needs"}
	}
	return metav1.Condition{Type: stashv1beta1.ConditionAccessGranted, Status: metav1.ConditionFalse, Reason: "Forbidden", Message: err.Error()}
}

// waitForAccess marks a Pending session as waiting for access (once: the
// condition does not change while it waits) and looks again later.
func waitForAccess[T interface {
	*stashv1beta1.BackupSession | *stashv1beta1.RestoreSession | *stashv1beta1.VerificationSession
	runtime.Object
}](ctx context.Context, a *Agent, l *lifecycle.Lifecycle[T], key, name string, conds func(T) *[]metav1.Condition, obj T, cause error) error {
	a.cur().queue.AddAfter(key, accessRecheck)
	c := accessCondition(cause)
	if meta.IsStatusConditionPresentAndEqual(*conds(obj), c.Type, c.Status) {
		return nil
	}
	a.log.Warn("session waits for access", "kind", l.Kind.Name, "session", name, "err", cause.Error())
	err := lifecycle.UpdateStatusIf(ctx, l.Kind.Client, name, func(o T) error {
		if l.Kind.State(o).Phase != lifecycle.Pending {
			return lifecycle.ErrSettled
		}
		meta.SetStatusCondition(conds(o), c)
		return nil
	})
	if err == nil {
		a.event(ctx, obj, corev1.EventTypeWarning, "AccessDenied", c.Message)
	}
	if errors.Is(err, lifecycle.ErrSettled) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
