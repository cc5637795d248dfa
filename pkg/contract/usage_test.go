package contract

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
)

func TestUsageAllowed(t *testing.T) {
	repo := func(from *stashv1alpha1.FromNamespaces) *stashv1alpha1.Repository {
		r := &stashv1alpha1.Repository{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "backups"}}
		if from != nil {
			r.Spec.UsagePolicy = &stashv1alpha1.UsagePolicy{AllowedNamespaces: stashv1alpha1.AllowedNamespaces{From: from}}
		}
		return r
	}
	all, same, sel := stashv1alpha1.NamespacesFromAll, stashv1alpha1.NamespacesFromSame, stashv1alpha1.NamespacesFromSelector
	cases := []struct {
		name     string
		repo     *stashv1alpha1.Repository
		ns       string
		wantFrom stashv1alpha1.FromNamespaces
		ok       bool
	}{
		{"own namespace, no policy", repo(nil), "backups", same, true},
		{"own namespace, Same", repo(&same), "backups", same, true},
		{"other namespace, no policy", repo(nil), "shop", same, false},
		{"other namespace, Same", repo(&same), "shop", same, false},
		{"other namespace, All", repo(&all), "shop", all, true},
		{"other namespace, Selector (unsupported)", repo(&sel), "shop", sel, false},
	}
	for _, c := range cases {
		if from, ok := UsageAllowed(c.repo, c.ns); from != c.wantFrom || ok != c.ok {
			t.Errorf("%s: UsageAllowed = %s %v, want %s %v", c.name, from, ok, c.wantFrom, c.ok)
		}
	}
}
