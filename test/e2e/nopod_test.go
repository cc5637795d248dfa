package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// TestStatusSaysWhyTheAgentHasNoPod: in a namespace enforcing the
// restricted Pod Security Standard, an agent whose Repository is a
// hostPath volume never gets a pod, and `kubectl stash status` says so
// with the admission's own words. No kube-controller-manager runs here, so
// the test does its part by hand: it creates the ReplicaSet, has the real
// API server refuse the pod (the genuine PodSecurity denial), and records
// the FailedCreate Event the ReplicaSet controller would.
func TestStatusSaysWhyTheAgentHasNoPod(t *testing.T) {
	install(t)
	ns := "nopod-e2e"
	ctx := context.Background()
	_, err := kube(t).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
	}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	createSecret(t, ns, "db-auth", map[string]string{"username": "u", "password": "p"})
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": "nopod-e2e-password"})
	r := kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", t.TempDir(), "--secret", "repo-creds")
	mustOK(t, r, "repository")
	if !strings.Contains(r.stderr, "restricted Pod Security Standard") {
		t.Errorf("--path did not warn: %q", r.stderr)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "db", "--url", "db:3306", "--secret", "db-auth"), "appbinding")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "nightly", "--target", "appbinding/db", "--repository", "repo"), "backupconfig")
	dep, err := kube(t).AppsV1().Deployments(ns).Get(ctx, contract.AgentName("db"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	rs := ownedReplicaSet(t, dep)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: rs.Name + "-", Namespace: ns, Labels: dep.Spec.Template.Labels}, Spec: dep.Spec.Template.Spec}
	_, denial := kube(t).CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if !apierrors.IsForbidden(denial) || !strings.Contains(denial.Error(), "violates PodSecurity") {
		t.Fatalf("the agent's pod with a hostPath volume was not refused by PodSecurity: %v", denial)
	}
	now := metav1.NewTime(time.Now())
	_, err = kube(t).CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: rs.Name + ".", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, Namespace: ns, UID: rs.UID},
		Type:           corev1.EventTypeWarning, Reason: "FailedCreate", Message: "Error creating: " + denial.Error(),
		Source: corev1.EventSource{Component: "replicaset-controller"}, FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	r = kubectl(t, "", "stash", "-n", ns, "status")
	mustOK(t, r, "status")
	t.Logf("kubectl stash status:\n%s", r.stdout)
	for _, w := range []string{"no-agent", "agent has no pod", "has no pod: FailedCreate", "violates PodSecurity", "hostPath", "ReplicaSet " + rs.Name} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("status does not say %q:\n%s", w, r.stdout)
		}
	}
	r = kubectl(t, "", "stash", "-n", ns, "status", "-o", "json")
	mustOK(t, r, "status -o json")
	if !strings.Contains(r.stdout, `"agentReason": "FailedCreate: Error creating: pods`) {
		t.Errorf("status -o json lacks agentReason:\n%s", r.stdout)
	}
}

// ownedReplicaSet creates the ReplicaSet the Deployment controller would.
func ownedReplicaSet(t *testing.T, dep *appsv1.Deployment) *appsv1.ReplicaSet {
	t.Helper()
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-6f7d8c9b5", Namespace: dep.Namespace, Labels: dep.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: dep.Spec.Replicas, Selector: dep.Spec.Selector, Template: dep.Spec.Template},
	}
	got, err := kube(t).AppsV1().ReplicaSets(dep.Namespace).Create(context.Background(), rs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
