package render

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
)

func TestAgentObjectsAreLeastPrivilegeAndRestricted(t *testing.T) {
	ab := &appcatalog.AppBinding{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"},
		Spec: appcatalog.AppBindingSpec{Secret: &corev1.LocalObjectReference{Name: "db-auth"}}}
	repo := &stashv1alpha1.Repository{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
		Spec: stashv1alpha1.RepositorySpec{Backend: stashv1alpha1.Backend{StorageSecretName: "repo-creds", S3: &stashv1alpha1.S3Spec{}}}}
	objs, err := AgentObjects(AgentInput{AppBinding: ab, Repositories: []*stashv1alpha1.Repository{repo}, Image: "img:1", Pushgateway: "http://pg:9091"})
	if err != nil {
		t.Fatal(err)
	}
	role := objs[1].(*rbacv1.Role)
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if res == "secrets" && strings.Join(r.ResourceNames, ",") != "db-auth,repo-creds" {
				t.Errorf("secrets are not granted by exactly their names: %v", r.ResourceNames)
			}
			if res == "appbindings" && strings.Join(r.ResourceNames, ",") != "db" {
				t.Errorf("appbindings not limited to the target: %v", r.ResourceNames)
			}
			if res == "leases" && len(r.ResourceNames) > 0 && strings.Join(r.ResourceNames, ",") != "stash-agent-db,stash-repo-init-r" {
				t.Errorf("leases are not granted by exactly their names (election, repository init): %v", r.ResourceNames)
			}
		}
		for _, v := range r.Verbs {
			if v == "*" {
				t.Errorf("wildcard verb in %+v", r)
			}
		}
	}
	dep := objs[3].(*appsv1.Deployment)
	ctr := dep.Spec.Template.Spec.Containers[0]
	sc := ctr.SecurityContext
	if !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext is not restricted: %+v", sc)
	}
	if ctr.LivenessProbe == nil || ctr.ReadinessProbe == nil || len(ctr.Ports) != 1 {
		t.Error("probes or metrics port missing")
	}
	if !strings.Contains(strings.Join(ctr.Args, " "), "--pushgateway=http://pg:9091") {
		t.Errorf("args lack the pushgateway: %v", ctr.Args)
	}
}

// A Repository in another namespace: the agent reads it and its Secret,
// and takes its Repository Lease there, by name.
func TestCrossNamespaceRepositoryRole(t *testing.T) {
	ab := &appcatalog.AppBinding{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}}
	repo := &stashv1alpha1.Repository{ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: "backups"},
		Spec: stashv1alpha1.RepositorySpec{Backend: stashv1alpha1.Backend{StorageSecretName: "creds", S3: &stashv1alpha1.S3Spec{}}}}
	objs, err := AgentObjects(AgentInput{AppBinding: ab, Repositories: []*stashv1alpha1.Repository{repo}, Image: "img:1"})
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.Role
	for _, o := range objs {
		if r, ok := o.(*rbacv1.Role); ok && r.Namespace == "backups" {
			role = r
		}
	}
	if role == nil {
		t.Fatal("no Role in the Repository's namespace")
	}
	grants := map[string]bool{}
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				grants[res+" "+v+" "+strings.Join(r.ResourceNames, ",")] = true
			}
		}
	}
	for _, want := range []string{"repositories get shared", "secrets get creds", "leases create ", "leases get stash-repo-init-shared", "leases update stash-repo-init-shared"} {
		if !grants[want] {
			t.Errorf("the Role lacks %q: %v", want, grants)
		}
	}
	if len(grants) != 8 {
		t.Errorf("the Role grants %d things, want 8: %v", len(grants), grants)
	}
	own := objs[1].(*rbacv1.Role)
	for _, r := range own.Rules {
		if strings.Contains(strings.Join(r.ResourceNames, ","), "stash-repo-init-shared") {
			t.Errorf("the agent's own Role names another namespace's Lease: %+v", r)
		}
	}
}

// TestTempDirIsOnTheScratchVolume: restic writes temporary packs to
// $TMPDIR, and the root filesystem is read-only, so TMPDIR must be under
// the writable scratch mount, where the agent (--scratch-dir) creates it.
func TestTempDirIsOnTheScratchVolume(t *testing.T) {
	ab := &appcatalog.AppBinding{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}}
	objs, err := AgentObjects(AgentInput{AppBinding: ab, Image: "img:1"})
	if err != nil {
		t.Fatal(err)
	}
	ctr := objs[3].(*appsv1.Deployment).Spec.Template.Spec.Containers[0]
	tmpdir := ""
	for _, e := range ctr.Env {
		if e.Name == "TMPDIR" {
			tmpdir = e.Value
		}
	}
	scratch := ""
	for _, m := range ctr.VolumeMounts {
		if m.Name == "scratch" && !m.ReadOnly {
			scratch = m.MountPath
		}
	}
	if scratch == "" || !strings.HasPrefix(tmpdir, scratch+"/") {
		t.Fatalf("TMPDIR=%q is not under the writable scratch mount %q", tmpdir, scratch)
	}
	if !slices.Contains(ctr.Args, "--scratch-dir="+scratch) || tmpdir != scratch+"/tmp" {
		t.Errorf("the agent's --scratch-dir (%v) and TMPDIR %q disagree: the agent creates <scratch-dir>/tmp", ctr.Args, tmpdir)
	}
}

// Durations the plugin was given reach the agent as its flags; unset ones
// keep the agent's defaults.
func TestDurationsArePassedToTheAgent(t *testing.T) {
	ab := &appcatalog.AppBinding{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}}
	for _, c := range []struct {
		in         AgentInput
		flag, want string
	}{
		{AgentInput{}, "--stall-timeout", ""},
		{AgentInput{StallTimeout: 3 * time.Second}, "--stall-timeout", "--stall-timeout=3s"},
		{AgentInput{}, "--lease-duration", ""},
		{AgentInput{LeaseDuration: 90 * time.Second}, "--lease-duration", "--lease-duration=1m30s"},
	} {
		c.in.AppBinding, c.in.Image = ab, "img:1"
		objs, err := AgentObjects(c.in)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		for _, a := range objs[3].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Args {
			if strings.HasPrefix(a, c.flag) {
				got = a
			}
		}
		if got != c.want {
			t.Errorf("%+v: arg %q, want %q", c.in, got, c.want)
		}
	}
}

func localRepo(ns, name, mountPath, subPath string, vs corev1.VolumeSource) *stashv1alpha1.Repository {
	return &stashv1alpha1.Repository{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: stashv1alpha1.RepositorySpec{Backend: stashv1alpha1.Backend{StorageSecretName: "creds",
			Local: &stashv1alpha1.LocalSpec{MountPath: mountPath, SubPath: subPath, VolumeSource: vs}}}}
}

func pvc(name string) corev1.VolumeSource {
	return corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}
}

// TestLocalRepositoriesAreMounted: a local Repository's volume is mounted
// whole at its mountPath (the agent uses mountPath/subPath in it), shared
// by Repositories on the same volume, refused when two volumes claim one
// path, and skipped for a PVC of another namespace, which no pod here can
// mount.
func TestLocalRepositoriesAreMounted(t *testing.T) {
	ab := &appcatalog.AppBinding{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}}
	hostPath := corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/backups"}}
	repos := []*stashv1alpha1.Repository{
		localRepo("ns", "a", "/stash-repo/backups", "prod", pvc("backups")),
		localRepo("ns", "b", "/stash-repo/backups", "staging", pvc("backups")),
		localRepo("other", "c", "/stash-repo/theirs", "", pvc("theirs")),
		localRepo("other", "d", "/srv/backups", "", hostPath),
	}
	objs, err := AgentObjects(AgentInput{AppBinding: ab, Image: "img:1", Repositories: repos})
	if err != nil {
		t.Fatal(err)
	}
	pod := objs[3].(*appsv1.Deployment).Spec.Template.Spec
	got := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		if m.SubPath != "" || m.ReadOnly {
			t.Errorf("mount %+v: the volume is mounted whole and writable; the subPath is the agent's", m)
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.PersistentVolumeClaim != nil:
				got[m.MountPath] = "pvc:" + v.PersistentVolumeClaim.ClaimName
			case v.HostPath != nil:
				got[m.MountPath] = "hostPath:" + v.HostPath.Path
			}
		}
	}
	want := map[string]string{"/stash-repo/backups": "pvc:backups", "/srv/backups": "hostPath:/srv/backups"}
	if len(got) != len(want) || got["/stash-repo/backups"] != want["/stash-repo/backups"] || got["/srv/backups"] != want["/srv/backups"] {
		t.Errorf("mounts = %v, want %v", got, want)
	}

	clash := append(repos, localRepo("ns", "e", "/stash-repo/backups", "", pvc("other-claim")))
	if _, err := AgentObjects(AgentInput{AppBinding: ab, Image: "img:1", Repositories: clash}); err == nil || !strings.Contains(err.Error(), "/stash-repo/backups") || !strings.Contains(err.Error(), "ns/e") {
		t.Errorf("two volumes at one mountPath: %v", err)
	}
}
