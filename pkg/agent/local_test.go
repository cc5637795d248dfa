package agent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
)

func TestCheckLocalSaysWhyAVolumeCannotBeUsed(t *testing.T) {
	a := &Agent{cfg: Config{Namespace: "ns", AppBinding: "db"}}
	mounted := t.TempDir()
	claim := corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "backups"}}
	host := corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/x"}}
	repo := func(ns, mountPath, sub string, vs corev1.VolumeSource) *stashv1alpha1.Repository {
		return &stashv1alpha1.Repository{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns},
			Spec: stashv1alpha1.RepositorySpec{Backend: stashv1alpha1.Backend{Local: &stashv1alpha1.LocalSpec{MountPath: mountPath, SubPath: sub, VolumeSource: vs}}}}
	}
	cases := []struct {
		name    string
		repo    *stashv1alpha1.Repository
		invalid bool
		want    string // "" means no error
	}{
		{"a mounted PVC", repo("ns", mounted, "prod", claim), false, ""},
		{"a PVC of another namespace", repo("other", mounted, "", claim), true, "cannot mount"},
		{"a subPath leaving the volume", repo("ns", mounted, "../etc", claim), true, "subPath"},
		{"a PVC the Deployment does not mount", repo("ns", filepath.Join(mounted, "absent"), "", claim), false, "kubectl stash agent apply --target appbinding/db"},
		{"a hostPath restic creates", repo("other", filepath.Join(mounted, "absent"), "", host), false, ""},
	}
	for _, c := range cases {
		err := a.checkLocal(c.repo)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want it to say %q", c.name, err, c.want)
		case c.want != "" && errors.Is(err, ErrInvalid) != c.invalid:
			t.Errorf("%s: ErrInvalid is %v, want %v", c.name, errors.Is(err, ErrInvalid), c.invalid)
		}
	}
}
