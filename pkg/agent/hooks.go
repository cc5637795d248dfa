package agent

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/hooks"
)

// hookStep is one hook of a session: where it runs and what it is called
// in the session's conditions.
type hookStep struct {
	name      string // preBackup, postBackup, preRestore, postRestore
	condition string // Stash's condition type for its outcome
	handler   *stashv1beta1.Handler
	policy    stashv1beta1.HookExecutionPolicy
}

// checkHooks says why the agent cannot honour one of a session's hooks,
// before anything runs.
func (a *Agent) checkHooks(steps ...hookStep) error {
	for _, s := range steps {
		if s.handler == nil {
			continue
		}
		if err := hooks.Check(*s.handler, a.cfg.HookExecPod != "", a.cfg.AppBinding); err != nil {
			return fmt.Errorf("%w: hooks.%s cannot be run: %w", ErrInvalid, s.name, err)
		}
	}
	return nil
}

// runHook runs one hook against the database's host (or in the database's
// Pod, for exec hooks the user opted in to) and returns its condition.
// A nil handler is no hook: no condition, no error.
func (a *Agent) runHook(ctx context.Context, s hookStep, host string) (*metav1.Condition, error) {
	if s.handler == nil {
		return nil, nil
	}
	env := hooks.Env{Host: host}
	if a.cfg.HookExecPod != "" {
		ex, err := hooks.NewPodExecer(a.rc, a.cfg.Namespace, a.cfg.HookExecPod)
		if err != nil {
			return nil, fmt.Errorf("hooks.%s: %w", s.name, err)
		}
		env.Exec = ex
	}
	res, err := hooks.Run(ctx, *s.handler, env)
	if err != nil {
		err = fmt.Errorf("hooks.%s failed: %w", s.name, err)
		return &metav1.Condition{Type: s.condition, Status: metav1.ConditionFalse, Reason: "HookFailed", Message: err.Error()}, err
	}
	a.log.Info("hook ran", "hook", s.name, "result", res.Summary)
	return &metav1.Condition{Type: s.condition, Status: metav1.ConditionTrue, Reason: "HookSucceeded", Message: res.Summary}, nil
}

// postHook runs a post hook when its executionPolicy says so, given the
// session's outcome so far; it returns the outcome with the hook's failure
// joined in. finalAttempt: no retry follows a failure.
func (a *Agent) postHook(ctx context.Context, s hookStep, host string, outcome error, finalAttempt bool, conds *[]metav1.Condition) error {
	if s.handler == nil || !hooks.ShouldRun(s.policy, outcome == nil, finalAttempt) {
		return outcome
	}
	c, err := a.runHook(ctx, s, host)
	if c != nil {
		meta.SetStatusCondition(conds, *c)
	}
	if err == nil {
		return outcome
	}
	if outcome == nil {
		return err
	}
	return errors.Join(outcome, err)
}

func preBackupHook(bc *stashv1beta1.BackupConfiguration) hookStep {
	s := hookStep{name: "preBackup", condition: stashv1beta1.ConditionPreBackupHookExecutionSucceeded}
	if bc.Spec.Hooks != nil {
		s.handler = bc.Spec.Hooks.PreBackup
	}
	return s
}

func postBackupHook(bc *stashv1beta1.BackupConfiguration) hookStep {
	s := hookStep{name: "postBackup", condition: stashv1beta1.ConditionPostBackupHookExecutionSucceeded}
	if h := bc.Spec.Hooks; h != nil && h.PostBackup != nil {
		s.handler, s.policy = &h.PostBackup.Handler, h.PostBackup.ExecutionPolicy
	}
	return s
}

func preRestoreHook(rs *stashv1beta1.RestoreSession) hookStep {
	s := hookStep{name: "preRestore", condition: stashv1beta1.ConditionPreRestoreHookExecutionSucceeded}
	if rs.Spec.Hooks != nil {
		s.handler = rs.Spec.Hooks.PreRestore
	}
	return s
}

func postRestoreHook(rs *stashv1beta1.RestoreSession) hookStep {
	s := hookStep{name: "postRestore", condition: stashv1beta1.ConditionPostRestoreHookExecutionSucceeded}
	if h := rs.Spec.Hooks; h != nil && h.PostRestore != nil {
		s.handler, s.policy = &h.PostRestore.Handler, h.PostRestore.ExecutionPolicy
	}
	return s
}
