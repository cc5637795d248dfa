package repository

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
)

// TestLocalURLHonoursSubPath: the repository is mountPath/subPath, and a
// subPath that would leave the volume is refused.
func TestLocalURLHonoursSubPath(t *testing.T) {
	local := func(sub string) stashv1alpha1.Backend {
		return stashv1alpha1.Backend{Local: &stashv1alpha1.LocalSpec{MountPath: "/stash-repo/backups", SubPath: sub,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "backups"}}}}
	}
	for sub, want := range map[string]string{"": "/stash-repo/backups", "prod/mysql": "/stash-repo/backups/prod/mysql", "a/./b/": "/stash-repo/backups/a/b"} {
		if got, err := URL(local(sub)); err != nil || got != want {
			t.Errorf("subPath %q: %q, %v; want %q", sub, got, err, want)
		}
	}
	for _, bad := range []string{"/etc", "..", "a/../../etc", "../x"} {
		if got, err := URL(local(bad)); err == nil {
			t.Errorf("subPath %q accepted: %q", bad, got)
		}
	}
}
