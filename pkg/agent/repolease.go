package agent

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
)

// underRepoLease runs fn while this agent holds the Repository's Lease, the
// one every agent using the Repository takes for work that must not
// overlap or that takes restic's exclusive lock: its init and retention.
//
// For retention the Lease is a queue, not the safety: restic's own lock
// still guards the repository. Without it, configs sharing a repository
// each wait on restic's lock, which retries after 5 s, then 10, 20 and up
// to 60 s: the lock is free most of the time and the waiters sleep (20
// configs in one slot: two retentions still waited after 10 min). Waiters
// on the Lease look every 2 s.
//
// A queue that moves is waited for; one holder that keeps the Lease past
// patience is not. Sessions of this agent, which share its identity, queue
// on a mutex first. fn runs on ctx, not the term's (see the callers).
func (a *Agent) underRepoLease(ctx context.Context, repo *stashv1alpha1.Repository, url, what string, patience time.Duration, fn func()) error {
	unlock, err := a.lockRepoLocal(ctx, url)
	if err != nil {
		return err
	}
	defer unlock()
	name := contract.RepoLease(repo.Name)
	if _, gerr := a.kube.Leases(repo.Namespace).Get(ctx, name); apierrors.IsForbidden(gerr) {
		// A Role rendered by an older plugin: go on without the Lease.
		a.log.Warn("cannot use the Repository's Lease; run `kubectl stash create backupconfig` again to update the agent's Role", "lease", name, "namespace", repo.Namespace)
		fn()
		return nil
	}
	e := a.elector(repo.Namespace, name)
	e.Patience = patience
	ran := false
	e.Run(ctx, func(context.Context) {
		ran = true
		fn()
	})
	if ran {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("could not take Lease %s/%s to %s: %s kept it for %s; if that agent is gone, delete the Lease", repo.Namespace, name, what, e.Holder(), patience)
}

// lockRepoLocal serialises this agent's work under one repository's Lease.
// It gives up when ctx ends, so a session queued behind another cannot
// hold shutdown past its grace.
func (a *Agent) lockRepoLocal(ctx context.Context, url string) (unlock func(), err error) {
	a.mu.Lock()
	l, ok := a.repoLocks[url]
	if !ok {
		l = make(chan struct{}, 1)
		a.repoLocks[url] = l
	}
	a.mu.Unlock()
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
