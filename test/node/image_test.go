package node

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubectl-stash/kubectl-stash/pkg/render"
)

// TestAgentWithoutItsToolsFailsAtStart runs the built agent image as a Pod
// whose PATH hides the MySQL client (as an image without it would): the
// agent exits at start-up naming the missing binary and the fix, before any
// backup is due, and the Pod shows it.
func TestAgentWithoutItsToolsFailsAtStart(t *testing.T) {
	ctx := context.Background()
	ns := "image-tools"
	restrictedNamespace(t, ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-no-mysqldump", Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](render.AgentUID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "agent", Image: "ghcr.io/kubectl-stash/stash-agent:" + testVersion, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{render.AgentCommand}, Args: []string{"run", "--appbinding=mysql", "--scratch-dir=/stash-tmp"},
				// restic and the agent live in /usr/local/bin; the MySQL client in /usr/bin.
				Env: []corev1.EnvVar{{Name: "PATH", Value: "/usr/local/bin"}, {Name: "POD_NAMESPACE", Value: ns}},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/stash-tmp"}},
			}},
			Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	if _, err := s.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var p *corev1.Pod
	if !poll(90*time.Second, func() bool {
		got, err := s.kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		p = got
		return err == nil && got.Status.Phase == corev1.PodFailed
	}) {
		t.Fatalf("the agent without mysqldump did not fail at start: %s", podSummary(p))
	}
	logs := mustOK(t, kubectl(t, "", "logs", "-n", ns, pod.Name), "logs")
	for _, want := range []string{"mysqldump", "PATH=/usr/local/bin", "make image"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the start-up error lacks %q:\n%s", want, logs)
		}
	}
	t.Logf("agent log: %s", strings.TrimSpace(logs))
}
