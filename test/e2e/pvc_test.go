package e2e

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// TestPVCRepositoryIsMounted: a local Repository on a PersistentVolumeClaim
// is accepted by the API server's schema, and the agent Deployment the
// plugin renders mounts the claim where the Repository says, writable.
// (Backing up into it needs a kubelet: process mode has no PVC.)
func TestPVCRepositoryIsMounted(t *testing.T) {
	ns := "pvc-e2e"
	newNamespace(t, ns)
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": "pvc-e2e-password"})
	createSecret(t, ns, "db-auth", map[string]string{"username": "u", "password": "p"})
	r := kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--pvc", "backups", "--sub-path", "mysql", "--secret", "repo-creds")
	mustOK(t, r, "create repository --pvc")
	if !strings.Contains(r.stderr, "PersistentVolumeClaim backups not found") {
		t.Errorf("no warning about the missing claim: %q", r.stderr)
	}
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "db", "--url", "tcp(127.0.0.1:3306)/", "--secret", "db-auth"), "appbinding")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "nightly", "--target", "appbinding/db", "--repository", "repo"), "backupconfig")

	dep, err := kube(t).AppsV1().Deployments(ns).Get(context.Background(), contract.AgentName("db"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := dep.Spec.Template.Spec
	claimVolume := ""
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "backups" {
			claimVolume = v.Name
		}
	}
	if claimVolume == "" {
		t.Fatalf("the Deployment has no volume for claim backups: %+v", pod.Volumes)
	}
	found := false
	for _, m := range pod.Containers[0].VolumeMounts {
		if m.Name == claimVolume {
			found = m.MountPath == "/stash-repo/backups" && !m.ReadOnly && m.SubPath == ""
		}
	}
	if !found {
		t.Errorf("claim backups is not mounted writable at /stash-repo/backups: %+v", pod.Containers[0].VolumeMounts)
	}
}
