package node

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// iptables changes the node's own rules (in its network namespace).
func iptables(t *testing.T, args ...string) {
	t.Helper()
	if out, err := s.node.Command(context.Background(), "iptables", args...).CombinedOutput(); err != nil {
		t.Fatalf("iptables %v: %v: %s", args, err, out)
	}
}

func podState(t *testing.T, ns, name string) (ready bool, restarts int32) {
	t.Helper()
	p, err := s.kube.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, c := range p.Status.ContainerStatuses {
		restarts += c.RestartCount
	}
	return ready, restarts
}

// TestAgentUnreadyWithoutAPIServer: an agent cut off from the API server in
// the middle of a backup goes unready, is not restarted, and finishes the
// backup once the API server is back.
func TestAgentUnreadyWithoutAPIServer(t *testing.T) {
	f := newAgentFixture(t, "probes")
	pod := agentPod(t, f.ns, "mysql", 2*time.Minute)
	release := f.lockOrders(t)
	name := f.trigger(t)
	f.waitDumping(t)

	// Reject the Pod's traffic to the API server: after the Service's DNAT it
	// arrives on the node's own address.
	rule := []string{"INPUT", "-s", pod.Status.PodIP, "-p", "tcp", "--dport", "6443", "-j", "REJECT", "--reject-with", "tcp-reset"}
	iptables(t, append([]string{"-I"}, rule...)...)
	blocked := true
	unblock := func() {
		if blocked {
			iptables(t, append([]string{"-D"}, rule...)...)
			blocked = false
		}
	}
	t.Cleanup(unblock)
	at := time.Now()
	if !poll(90*time.Second, func() bool { r, _ := podState(t, f.ns, pod.Name); return !r }) {
		t.Fatal("the agent stayed ready without the API server")
	}
	t.Logf("unready %s after the API server was cut off", time.Since(at).Round(time.Second))
	// Liveness must not kill it: hold the cut past three liveness periods.
	holdUntil := time.Now().Add(65 * time.Second)
	for time.Now().Before(holdUntil) {
		if _, restarts := podState(t, f.ns, pod.Name); restarts > 0 {
			t.Fatal("the kubelet restarted the agent while the API server was away, killing its backup")
		}
		time.Sleep(2 * time.Second)
	}
	unblock()
	release()
	if !poll(90*time.Second, func() bool { r, _ := podState(t, f.ns, pod.Name); return r }) {
		t.Fatal("the agent did not become ready again")
	}
	bs := f.waitPhase(t, name, 3*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded {
		t.Fatalf("the backup that ran while the API server was away ended %s: %s", bs.Status.Phase, bs.Status.Message)
	}
	if _, restarts := podState(t, f.ns, pod.Name); restarts != 0 {
		t.Fatalf("agent restarted %d times", restarts)
	}
	logs := kubectl(t, "", "-n", f.ns, "logs", pod.Name)
	if strings.Contains(logs.stdout, f.db.password) {
		t.Fatal("the database password is in the agent's log")
	}
}
