package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// The fixtures are what kube-controller-manager leaves when a namespace
// enforcing the restricted Pod Security Standard refuses the agent's pod.
// No controller manager runs in the test environment, so they are written
// by hand here; test/e2e does the same on the real API server.

const podSecurityDenial = `pods "stash-agent-db-7c9d-x2x4q" is forbidden: violates PodSecurity "restricted:latest": hostPath volumes (volume "repo-0")`

var agentLabels = map[string]string{"app.kubernetes.io/name": "stash-agent", "app.kubernetes.io/instance": "db"}

func agentDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "stash-agent-db", Namespace: "ns", UID: types.UID("dep-uid")},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: agentLabels}},
	}
}

func replicaSet(name string, owner *appsv1.Deployment, created time.Time) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: "ns", UID: types.UID(name + "-uid"), Labels: agentLabels, CreationTimestamp: metav1.NewTime(created),
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}},
	}}
}

func rsEvent(name string, rs *appsv1.ReplicaSet, typ, reason, msg string, at time.Time) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "ns"},
		InvolvedObject: corev1.ObjectReference{Kind: "ReplicaSet", Name: rs.Name, Namespace: "ns", UID: rs.UID},
		Type:           typ, Reason: reason, Message: msg, LastTimestamp: metav1.NewTime(at),
	}
}

func TestAgentNoPodReason(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	dep := agentDeployment()
	oldRS := replicaSet("stash-agent-db-5b6f", dep, t0)
	newRS := replicaSet("stash-agent-db-7c9d", dep, t0.Add(time.Hour))
	cases := []struct {
		name    string
		objects []runtime.Object
		dep     func(*appsv1.Deployment)
		want    []string
	}{
		{"FailedCreate on the newest ReplicaSet", []runtime.Object{oldRS, newRS,
			rsEvent("e1", oldRS, corev1.EventTypeWarning, "FailedCreate", "an older refusal", t0),
			rsEvent("e2", newRS, corev1.EventTypeNormal, "SuccessfulDelete", "not a warning", t0.Add(3*time.Hour)),
			rsEvent("e3", newRS, corev1.EventTypeWarning, "FailedCreate", podSecurityDenial, t0.Add(2*time.Hour))},
			nil, []string{"FailedCreate", "violates PodSecurity", "ReplicaSet stash-agent-db-7c9d"}},
		{"the Deployment's ReplicaFailure condition", nil, func(d *appsv1.Deployment) {
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: podSecurityDenial}}
		}, []string{"FailedCreate: pods", "violates PodSecurity"}},
		{"a pod waiting for its image", []runtime.Object{&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "stash-agent-db-7c9d-abcde", Namespace: "ns", Labels: agentLabels},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "agent",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "ghcr.io/kubectl-stash/stash-agent:v0.0.0"`}}}}},
		}}, nil, []string{"pod stash-agent-db-7c9d-abcde", "ImagePullBackOff", "Back-off pulling image"}},
		{"a ReplicaSet of another Deployment", []runtime.Object{
			replicaSet("other-1", &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "other", UID: "other-uid"}}, t0),
			rsEvent("e4", replicaSet("other-1", &appsv1.Deployment{}, t0), corev1.EventTypeWarning, "FailedCreate", podSecurityDenial, t0)},
			nil, nil},
		{"nothing says", []runtime.Object{newRS}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := dep.DeepCopy()
			if c.dep != nil {
				c.dep(d)
			}
			got := AgentNoPodReason(context.Background(), fake.NewClientset(c.objects...), d)
			if len(c.want) == 0 && got != "" {
				t.Errorf("reason %q, want none", got)
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("reason %q does not say %q", got, w)
				}
			}
		})
	}
}
