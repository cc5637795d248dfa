package contract

import (
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
)

// UsageAllowed applies a Repository's usagePolicy to a user in namespace
// ns: its own namespace always, another only when allowedNamespaces.from is
// All (Selector is not supported, so it allows none). from is the policy in
// force, for the caller's message.
func UsageAllowed(repo *stashv1alpha1.Repository, ns string) (from stashv1alpha1.FromNamespaces, ok bool) {
	from = stashv1alpha1.NamespacesFromSame
	if up := repo.Spec.UsagePolicy; up != nil && up.AllowedNamespaces.From != nil {
		from = *up.AllowedNamespaces.From
	}
	return from, repo.Namespace == ns || from == stashv1alpha1.NamespacesFromAll
}
