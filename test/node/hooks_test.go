package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/hooks"
)

// TestHooksPodExec runs exec hooks in a MariaDB Pod on the real node, through
// the API server's pods/exec, as a ServiceAccount whose Role grants exactly
// what `--hook-exec-pod` renders: pods/exec (create, get) on that Pod by name.
// The same identity is Forbidden to exec into another Pod of the namespace.
func TestHooksPodExec(t *testing.T) {
	ctx := context.Background()
	ns := "hooks-exec"
	restrictedNamespace(t, ns)
	t.Cleanup(func() {
		_ = s.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	db := startMariaDB(t, ns, "mariadb")

	// Another Pod the ServiceAccount must not reach: the same image, only sleeping.
	other := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(s.images.mariadbUID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "sleep", Image: s.images.mariadbRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sh", "-c", "exec sleep 3600"},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if _, err := s.kube.CoreV1().Pods(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "hook-exec", Namespace: ns}}
	if _, err := s.kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "hook-exec", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create", "get"}, ResourceNames: []string{db.name},
		}},
	}
	if _, err := s.kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "hook-exec", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "hook-exec"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "hook-exec", Namespace: ns}},
	}
	if _, err := s.kube.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "hook-exec", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(s.node.Admin)
	cfg.BearerToken = tok.Status.Token

	ex, err := hooks.NewPodExecer(cfg, ns, db.name)
	if err != nil {
		t.Fatal(err)
	}
	env := hooks.Env{Exec: ex, Timeout: time.Minute}
	hook := func(script string) stashv1beta1.Handler {
		return stashv1beta1.Handler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", script}}, ContainerName: "mariadb"}
	}

	// RBAC changes reach the authorizer through its informer: allow a moment.
	var res hooks.Result
	if !poll(30*time.Second, func() bool {
		res, err = hooks.Run(ctx, hook("echo ok; exit 0"), env)
		return !apierrors.IsForbidden(err)
	}) || err != nil {
		t.Fatalf("exec hook with the Role's rights: %v", err)
	}
	if res.Output != "ok\n" || res.Summary != "exec sh in container mariadb exited 0" {
		t.Errorf("success: %+v", res)
	}

	_, err = hooks.Run(ctx, hook("echo boom >&2; exit 3"), env)
	var code interface{ ExitStatus() int }
	if err == nil || !errors.As(err, &code) || code.ExitStatus() != 3 {
		t.Fatalf("exit 3: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "exited with code 3") || !strings.Contains(msg, "boom") {
		t.Errorf("exit 3 does not name its code and stderr: %q", msg)
	}
	t.Logf("failing hook: %v", err)

	waitPodReady(t, ns, "other", 2*time.Minute)
	elsewhere, err := hooks.NewPodExecer(cfg, ns, "other")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	err = elsewhere.Exec(ctx, "sleep", []string{"sh", "-c", "echo reached"}, &out, &errb)
	if !apierrors.IsForbidden(err) {
		t.Fatalf("exec into another Pod is not Forbidden: %v (stdout %q)", err, out.String())
	}
	if out.Len() != 0 {
		t.Errorf("the forbidden exec ran: %q", out.String())
	}
	t.Logf("another Pod: %v", err)
}
