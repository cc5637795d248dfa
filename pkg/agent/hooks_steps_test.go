package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/hooks"
)

// ---- hook steps ----

func execHandler() *stashv1beta1.Handler {
	return &stashv1beta1.Handler{Exec: &corev1.ExecAction{Command: []string{"mysql", "-e", "FLUSH TABLES"}}}
}

func tcpHandler(port int) *stashv1beta1.Handler {
	return &stashv1beta1.Handler{TCPSocket: &corev1.TCPSocketAction{Host: "127.0.0.1", Port: intstr.FromInt32(int32(port))}}
}

// Each session hook is read from its own field, with its own name, Stash's
// condition type and (for post hooks) the executionPolicy.
func TestHookStepsPickHandlerPolicyAndCondition(t *testing.T) {
	pre, post := execHandler(), tcpHandler(3306)
	bc := &stashv1beta1.BackupConfiguration{}
	bc.Spec.Hooks = &stashv1beta1.BackupHooks{PreBackup: pre, PostBackup: &stashv1beta1.PostHook{Handler: *post, ExecutionPolicy: stashv1beta1.ExecuteOnFailure}}
	rs := &stashv1beta1.RestoreSession{}
	rs.Spec.Hooks = &stashv1beta1.RestoreHooks{PreRestore: pre, PostRestore: &stashv1beta1.PostHook{Handler: *post, ExecutionPolicy: stashv1beta1.ExecuteOnSuccess}}

	cases := []struct {
		got             hookStep
		name, condition string
		handler         *stashv1beta1.Handler
		post            bool
		policy          stashv1beta1.HookExecutionPolicy
	}{
		{preBackupHook(bc), "preBackup", stashv1beta1.ConditionPreBackupHookExecutionSucceeded, pre, false, ""},
		{postBackupHook(bc), "postBackup", stashv1beta1.ConditionPostBackupHookExecutionSucceeded, post, true, stashv1beta1.ExecuteOnFailure},
		{preRestoreHook(rs), "preRestore", stashv1beta1.ConditionPreRestoreHookExecutionSucceeded, pre, false, ""},
		{postRestoreHook(rs), "postRestore", stashv1beta1.ConditionPostRestoreHookExecutionSucceeded, post, true, stashv1beta1.ExecuteOnSuccess},
	}
	for _, c := range cases {
		if c.got.name != c.name || c.got.condition != c.condition || c.got.policy != c.policy {
			t.Errorf("%s: got name %q, condition %q, policy %q; want %q, %q, %q", c.name, c.got.name, c.got.condition, c.got.policy, c.name, c.condition, c.policy)
		}
		switch {
		case c.got.handler == nil:
			t.Errorf("%s: no handler", c.name)
		case c.post && (c.got.handler.TCPSocket == nil || c.got.handler.Exec != nil):
			t.Errorf("%s: handler %+v, want the post hook's tcpSocket", c.name, *c.got.handler)
		case !c.post && c.got.handler != c.handler:
			t.Errorf("%s: handler %p, want the pre hook's %p", c.name, c.got.handler, c.handler)
		}
	}
}

// A session without hooks, or without one of them, has nil handlers: the
// step is skipped, not run empty.
func TestHookStepsWithoutHooks(t *testing.T) {
	none := &stashv1beta1.BackupConfiguration{}
	onlyPost := &stashv1beta1.BackupConfiguration{}
	onlyPost.Spec.Hooks = &stashv1beta1.BackupHooks{PostBackup: &stashv1beta1.PostHook{Handler: *tcpHandler(1)}}
	rsNone := &stashv1beta1.RestoreSession{}
	rsOnlyPre := &stashv1beta1.RestoreSession{}
	rsOnlyPre.Spec.Hooks = &stashv1beta1.RestoreHooks{PreRestore: tcpHandler(1)}
	for name, s := range map[string]hookStep{
		"preBackup, no hooks":   preBackupHook(none),
		"postBackup, no hooks":  postBackupHook(none),
		"preBackup, only post":  preBackupHook(onlyPost),
		"preRestore, no hooks":  preRestoreHook(rsNone),
		"postRestore, no hooks": postRestoreHook(rsNone),
		"postRestore, only pre": postRestoreHook(rsOnlyPre),
	} {
		if s.handler != nil || s.policy != "" {
			t.Errorf("%s: handler %+v, policy %q; want none", name, s.handler, s.policy)
		}
		if s.name == "" || s.condition == "" {
			t.Errorf("%s: step has no name or condition: %+v", name, s)
		}
	}
	if postBackupHook(onlyPost).handler == nil || preRestoreHook(rsOnlyPre).handler == nil {
		t.Error("the hook that is set was lost")
	}
}

// checkHooks makes the session Invalid for a hook the agent cannot run,
// naming the hook and the fix; exec hooks need --hook-exec-pod.
func TestCheckHooks(t *testing.T) {
	step := func(name string, h *stashv1beta1.Handler) hookStep { return hookStep{name: name, handler: h} }
	cases := []struct {
		name    string
		execPod string
		steps   []hookStep
		is      error    // nil: accepted
		has     []string // in the message
	}{
		{name: "no hooks", steps: []hookStep{step("preBackup", nil), step("postBackup", nil)}},
		{name: "tcpSocket hook", steps: []hookStep{step("preBackup", tcpHandler(3306))}},
		{
			name:  "exec hook without --hook-exec-pod",
			steps: []hookStep{step("preBackup", execHandler())},
			is:    hooks.ErrExecNotAllowed,
			has:   []string{"hooks.preBackup cannot be run", "--hook-exec-pod", "kubectl stash agent apply --target appbinding/shopdb"},
		},
		{name: "exec hook with --hook-exec-pod", execPod: "shopdb-0", steps: []hookStep{step("preBackup", execHandler()), step("postBackup", execHandler())}},
		{
			name:  "the bad hook among good ones is named",
			steps: []hookStep{step("preRestore", tcpHandler(3306)), step("postRestore", execHandler())},
			is:    hooks.ErrExecNotAllowed,
			has:   []string{"hooks.postRestore cannot be run", "--hook-exec-pod"},
		},
		{
			name:    "a hook with no action, even with --hook-exec-pod",
			execPod: "shopdb-0",
			steps:   []hookStep{step("postBackup", &stashv1beta1.Handler{})},
			is:      hooks.ErrNoAction,
			has:     []string{"hooks.postBackup cannot be run"},
		},
		{
			name:  "a tcpSocket hook with a port out of range",
			steps: []hookStep{step("preBackup", tcpHandler(70000))},
			is:    hooks.ErrBadPort,
			has:   []string{"hooks.preBackup"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := &Agent{cfg: Config{Namespace: "ns", AppBinding: "shopdb", HookExecPod: c.execPod}}
			err := a.checkHooks(c.steps...)
			if c.is == nil {
				if err != nil {
					t.Fatalf("checkHooks: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, c.is) {
				t.Fatalf("err = %v, want one wrapping ErrInvalid and %v", err, c.is)
			}
			for _, s := range c.has {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not say %q", err, s)
				}
			}
		})
	}
}

// postHook runs a post hook only when its policy says so, records its
// condition and joins its failure into the session's outcome.
func TestPostHookSkipped(t *testing.T) {
	a := &Agent{cfg: Config{Namespace: "ns", AppBinding: "shopdb"}}
	failed := errors.New("backup failed")
	// Port 1 on 127.0.0.1: the hook would fail if it ran.
	handler := tcpHandler(1)
	cases := []struct {
		name    string
		s       hookStep
		outcome error
		final   bool
	}{
		{"nil handler after success", hookStep{name: "postBackup", condition: stashv1beta1.ConditionPostBackupHookExecutionSucceeded}, nil, true},
		{"nil handler after failure", hookStep{name: "postBackup", condition: stashv1beta1.ConditionPostBackupHookExecutionSucceeded}, failed, true},
		{"OnSuccess after failure", hookStep{name: "postBackup", condition: "C", handler: handler, policy: stashv1beta1.ExecuteOnSuccess}, failed, true},
		{"OnFailure after success", hookStep{name: "postBackup", condition: "C", handler: handler, policy: stashv1beta1.ExecuteOnFailure}, nil, true},
		{"OnFinalRetryFailure with a retry to come", hookStep{name: "postBackup", condition: "C", handler: handler, policy: stashv1beta1.ExecuteOnFinalRetryFailure}, failed, false},
		{"OnFinalRetryFailure after success", hookStep{name: "postBackup", condition: "C", handler: handler, policy: stashv1beta1.ExecuteOnFinalRetryFailure}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var conds []metav1.Condition
			got := a.postHook(context.Background(), c.s, "127.0.0.1", c.outcome, c.final, &conds)
			if got != c.outcome {
				t.Errorf("outcome = %v, want %v unchanged", got, c.outcome)
			}
			if len(conds) != 0 {
				t.Errorf("conditions = %+v, want none", conds)
			}
		})
	}
}

func TestPostHookRuns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := tcpHandler(ln.Addr().(*net.TCPAddr).Port)
	// A port that was just free: nothing listens there.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := tcpHandler(ln2.Addr().(*net.TCPAddr).Port)
	ln2.Close()

	a := &Agent{cfg: Config{Namespace: "ns", AppBinding: "shopdb"}, log: slog.New(slog.DiscardHandler)}
	cond := stashv1beta1.ConditionPostBackupHookExecutionSucceeded
	failed := errors.New("backup failed")

	t.Run("succeeds after a success: True, outcome nil", func(t *testing.T) {
		var conds []metav1.Condition
		got := a.postHook(context.Background(), hookStep{name: "postBackup", condition: cond, handler: open}, "", nil, true, &conds)
		if got != nil {
			t.Errorf("outcome = %v, want nil", got)
		}
		if c := meta.FindStatusCondition(conds, cond); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "HookSucceeded" {
			t.Errorf("conditions = %+v, want %s True", conds, cond)
		}
	})
	t.Run("succeeds after a failure: the failure stays", func(t *testing.T) {
		var conds []metav1.Condition
		got := a.postHook(context.Background(), hookStep{name: "postBackup", condition: cond, handler: open, policy: stashv1beta1.ExecuteOnFailure}, "", failed, true, &conds)
		if got != failed {
			t.Errorf("outcome = %v, want %v", got, failed)
		}
		if !meta.IsStatusConditionTrue(conds, cond) {
			t.Errorf("conditions = %+v, want %s True", conds, cond)
		}
	})
	t.Run("fails after a success: the hook's failure", func(t *testing.T) {
		var conds []metav1.Condition
		got := a.postHook(context.Background(), hookStep{name: "postBackup", condition: cond, handler: closed}, "", nil, true, &conds)
		if got == nil || !strings.Contains(got.Error(), "hooks.postBackup failed") {
			t.Errorf("outcome = %v, want the hook's failure", got)
		}
		if c := meta.FindStatusCondition(conds, cond); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "HookFailed" {
			t.Errorf("conditions = %+v, want %s False", conds, cond)
		}
	})
	t.Run("fails after a failure: both joined", func(t *testing.T) {
		var conds []metav1.Condition
		got := a.postHook(context.Background(), hookStep{name: "postBackup", condition: cond, handler: closed, policy: stashv1beta1.ExecuteOnFinalRetryFailure}, "", failed, true, &conds)
		if !errors.Is(got, failed) || !strings.Contains(got.Error(), "hooks.postBackup failed") {
			t.Errorf("outcome = %v, want both failures", got)
		}
		if !meta.IsStatusConditionFalse(conds, cond) {
			t.Errorf("conditions = %+v, want %s False", conds, cond)
		}
	})
}

// ---- session state ----

func TestBackupPhase(t *testing.T) {
	for p, want := range map[stashv1beta1.BackupSessionPhase]lifecycle.Phase{
		"":                                  lifecycle.Pending,
		stashv1beta1.BackupSessionPending:   lifecycle.Pending,
		stashv1beta1.BackupSessionRunning:   lifecycle.Running,
		stashv1beta1.BackupSessionSucceeded: lifecycle.Done,
		stashv1beta1.BackupSessionFailed:    lifecycle.Done,
		stashv1beta1.BackupSessionSkipped:   lifecycle.Done,
		stashv1beta1.BackupSessionUnknown:   lifecycle.Done,
		"SomethingNew":                      lifecycle.Done,
	} {
		if got := backupPhase(p); got != want {
			t.Errorf("backupPhase(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestRestorePhase(t *testing.T) {
	for p, want := range map[stashv1beta1.RestorePhase]lifecycle.Phase{
		"":                            lifecycle.Pending,
		stashv1beta1.RestorePending:   lifecycle.Pending,
		stashv1beta1.RestoreRunning:   lifecycle.Running,
		stashv1beta1.RestoreSucceeded: lifecycle.Done,
		stashv1beta1.RestoreFailed:    lifecycle.Done,
		stashv1beta1.RestoreInvalid:   lifecycle.Done,
		stashv1beta1.RestoreUnknown:   lifecycle.Done,
	} {
		if got := restorePhase(p); got != want {
			t.Errorf("restorePhase(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestLastBeat(t *testing.T) {
	start := metav1.NewTime(time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC))
	beat := metav1.NewTime(start.Add(90 * time.Second))
	cases := []struct {
		name        string
		beat, start *metav1.Time
		want        time.Time
	}{
		{"heartbeat", &beat, &start, beat.Time},
		{"heartbeat without start", &beat, nil, beat.Time},
		{"no heartbeat: the start", nil, &start, start.Time},
		{"neither", nil, nil, time.Time{}},
	}
	for _, c := range cases {
		if got := lastBeat(c.beat, c.start); !got.Equal(c.want) {
			t.Errorf("%s: lastBeat = %v, want %v", c.name, got, c.want)
		}
	}
}

func testKindAgent(t *testing.T) *Agent {
	t.Helper()
	st, err := client.NewStash(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	return &Agent{cfg: Config{Namespace: "ns"}, stash: st}
}

// Claim makes a Pending session Running under the agent, starting it and
// its heartbeat now, and ends a wait for access it showed; Beat moves only
// the heartbeat.
func TestBackupKindClaimAndBeat(t *testing.T) {
	k := testKindAgent(t).backupKind()
	if k.Name != stashv1beta1.KindBackupSession || k.Client == nil {
		t.Fatalf("kind %q, client %v", k.Name, k.Client)
	}
	now := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	s := &stashv1beta1.BackupSession{}
	s.Status.Phase = stashv1beta1.BackupSessionPending
	s.Status.Conditions = []metav1.Condition{
		accessCondition(errors.New("no access")),
		{Type: stashv1beta1.ConditionPreBackupHookExecutionSucceeded, Status: metav1.ConditionTrue, Reason: "HookSucceeded"},
	}
	if st := k.State(s); st.Phase != lifecycle.Pending || st.ClaimedBy != "" || !st.Beat.IsZero() {
		t.Fatalf("state before claim = %+v", st)
	}

	k.Claim(s, "agent-a", now)
	if s.Status.Phase != stashv1beta1.BackupSessionRunning || s.Status.ClaimedBy != "agent-a" {
		t.Errorf("after Claim: phase %q, claimedBy %q", s.Status.Phase, s.Status.ClaimedBy)
	}
	if s.Status.StartTime == nil || !s.Status.StartTime.Time.Equal(now) || s.Status.HeartbeatTime == nil || !s.Status.HeartbeatTime.Time.Equal(now) {
		t.Errorf("after Claim: start %v, heartbeat %v; want both %v", s.Status.StartTime, s.Status.HeartbeatTime, now)
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, stashv1beta1.ConditionAccessGranted); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "Granted" {
		t.Errorf("after Claim: AccessGranted = %+v, want True", c)
	}
	if !meta.IsStatusConditionTrue(s.Status.Conditions, stashv1beta1.ConditionPreBackupHookExecutionSucceeded) || len(s.Status.Conditions) != 2 {
		t.Errorf("after Claim: other conditions changed: %+v", s.Status.Conditions)
	}
	if st := k.State(s); st.Phase != lifecycle.Running || st.ClaimedBy != "agent-a" || !st.Beat.Equal(now) {
		t.Errorf("state after claim = %+v", st)
	}

	later := now.Add(30 * time.Second)
	k.Beat(s, later)
	if !s.Status.HeartbeatTime.Time.Equal(later) || !s.Status.StartTime.Time.Equal(now) ||
		s.Status.Phase != stashv1beta1.BackupSessionRunning || s.Status.ClaimedBy != "agent-a" {
		t.Errorf("after Beat: %+v", s.Status)
	}
	if st := k.State(s); !st.Beat.Equal(later) {
		t.Errorf("state after beat = %+v, want beat %v", st, later)
	}
}

// A session that never waited for access gets no AccessGranted condition.
func TestClaimAddsNoAccessConditionUnasked(t *testing.T) {
	a := testKindAgent(t)
	now := time.Unix(1_700_000_000, 0)
	bs := &stashv1beta1.BackupSession{}
	a.backupKind().Claim(bs, "agent-a", now)
	rs := &stashv1beta1.RestoreSession{}
	a.restoreKind().Claim(rs, "agent-a", now)
	if len(bs.Status.Conditions) != 0 || len(rs.Status.Conditions) != 0 {
		t.Errorf("conditions after Claim: %+v, %+v; want none", bs.Status.Conditions, rs.Status.Conditions)
	}
}

func TestRestoreKindClaimAndBeat(t *testing.T) {
	k := testKindAgent(t).restoreKind()
	if k.Name != stashv1beta1.KindRestoreSession || k.Client == nil {
		t.Fatalf("kind %q, client %v", k.Name, k.Client)
	}
	now := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	s := &stashv1beta1.RestoreSession{}
	s.Status.Conditions = []metav1.Condition{accessCondition(errors.New("no access"))}
	k.Claim(s, "agent-b", now)
	if s.Status.Phase != stashv1beta1.RestoreRunning || s.Status.ClaimedBy != "agent-b" {
		t.Errorf("after Claim: phase %q, claimedBy %q", s.Status.Phase, s.Status.ClaimedBy)
	}
	if s.Status.StartTime == nil || !s.Status.StartTime.Time.Equal(now) || s.Status.HeartbeatTime == nil || !s.Status.HeartbeatTime.Time.Equal(now) {
		t.Errorf("after Claim: start %v, heartbeat %v; want both %v", s.Status.StartTime, s.Status.HeartbeatTime, now)
	}
	if s.Status.TotalHosts == nil || *s.Status.TotalHosts != 1 {
		t.Errorf("after Claim: totalHosts %v, want 1", s.Status.TotalHosts)
	}
	if !meta.IsStatusConditionTrue(s.Status.Conditions, stashv1beta1.ConditionAccessGranted) {
		t.Errorf("after Claim: conditions %+v, want AccessGranted True", s.Status.Conditions)
	}
	if st := k.State(s); st.Phase != lifecycle.Running || st.ClaimedBy != "agent-b" || !st.Beat.Equal(now) {
		t.Errorf("state after claim = %+v", st)
	}
	later := now.Add(time.Minute)
	k.Beat(s, later)
	if !s.Status.HeartbeatTime.Time.Equal(later) || !s.Status.StartTime.Time.Equal(now) || s.Status.Phase != stashv1beta1.RestoreRunning {
		t.Errorf("after Beat: %+v", s.Status)
	}

	// A session claimed by an older agent, with a start but no heartbeat.
	old := &stashv1beta1.RestoreSession{}
	old.Status.Phase, old.Status.ClaimedBy, old.Status.StartTime = stashv1beta1.RestoreRunning, "agent-old", &metav1.Time{Time: now}
	if st := k.State(old); st.Phase != lifecycle.Running || st.ClaimedBy != "agent-old" || !st.Beat.Equal(now) {
		t.Errorf("state of a session without heartbeat = %+v", st)
	}
}

// ---- access ----

func TestAccessCondition(t *testing.T) {
	ok := accessCondition(nil)
	if ok.Type != stashv1beta1.ConditionAccessGranted || ok.Status != metav1.ConditionTrue || ok.Reason != "Granted" || ok.Message == "" {
		t.Errorf("accessCondition(nil) = %+v", ok)
	}
	cause := errors.New("the agent's Role does not grant access to Repository ns/s3: grant it with `kubectl stash agent apply`")
	no := accessCondition(cause)
	if no.Type != stashv1beta1.ConditionAccessGranted || no.Status != metav1.ConditionFalse || no.Reason != "Forbidden" || no.Message != cause.Error() {
		t.Errorf("accessCondition(err) = %+v", no)
	}
}

func TestRepoArg(t *testing.T) {
	cases := []struct {
		ref  stashv1beta1.RepositoryRef
		ns   string
		want string
	}{
		{stashv1beta1.RepositoryRef{Name: "s3"}, "ns", "s3"},
		{stashv1beta1.RepositoryRef{Name: "s3", Namespace: "ns"}, "ns", "s3"},
		{stashv1beta1.RepositoryRef{Name: "s3", Namespace: "backups"}, "ns", "backups/s3"},
	}
	for _, c := range cases {
		if got := repoArg(c.ref, c.ns); got != c.want {
			t.Errorf("repoArg(%+v, %q) = %q, want %q", c.ref, c.ns, got, c.want)
		}
	}
}
