package render

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
)

// Exec hooks are opt-in: without --hook-exec-pod the Role grants no
// pods/exec at all; with it, exactly one rule for exactly that Pod, and the
// agent is told the Pod's name.
func TestHookExecPodIsOptInAndByName(t *testing.T) {
	ab := &appcatalog.AppBinding{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}}
	execRules := func(objs []runtime.Object) ([]rbacv1.PolicyRule, []string) {
		var rules []rbacv1.PolicyRule
		var args []string
		for _, o := range objs {
			switch v := o.(type) {
			case *rbacv1.Role:
				for _, r := range v.Rules {
					for _, res := range r.Resources {
						if strings.HasPrefix(res, "pods") {
							rules = append(rules, r)
						}
					}
				}
			case *appsv1.Deployment:
				args = v.Spec.Template.Spec.Containers[0].Args
			}
		}
		return rules, args
	}
	render := func(pod string) ([]rbacv1.PolicyRule, []string) {
		t.Helper()
		objs, err := AgentObjects(AgentInput{AppBinding: ab, Image: "img:1", HookExecPod: pod})
		if err != nil {
			t.Fatal(err)
		}
		return execRules(objs)
	}

	rules, args := render("")
	if len(rules) != 0 {
		t.Errorf("no --hook-exec-pod, yet the Role grants pods: %+v", rules)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--hook-exec-pod") {
			t.Errorf("no --hook-exec-pod, yet the agent gets %s", a)
		}
	}

	rules, args = render("mysql-0")
	if len(rules) != 1 {
		t.Fatalf("want exactly one pods rule, got %+v", rules)
	}
	r := rules[0]
	if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{"pods/exec"}) ||
		!slices.Equal(r.Verbs, []string{"create", "get"}) || !slices.Equal(r.ResourceNames, []string{"mysql-0"}) {
		t.Errorf("exec rule is not pods/exec create,get on mysql-0 only: %+v", r)
	}
	if !slices.Contains(args, "--hook-exec-pod=mysql-0") {
		t.Errorf("agent args lack --hook-exec-pod=mysql-0: %v", args)
	}

	if _, err := AgentObjects(AgentInput{AppBinding: ab, Image: "img:1", HookExecPod: "Not_A_Pod"}); err == nil {
		t.Error("a hook exec pod that is not a DNS-1123 subdomain was rendered")
	}
}
