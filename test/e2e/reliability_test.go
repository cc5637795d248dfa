package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// TestTriggerStorm: 20 sessions within a second; one runs, the others are
// Skipped with a reason, and nothing deadlocks.
func TestTriggerStorm(t *testing.T) {
	f := newBackupFixture(t, "storm-e2e", s.env.MariaDBs[1])
	ns := f.ns
	ctx := context.Background()
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": f.repoPass})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", t.TempDir(), "--secret", "repo-creds"), "repo")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "storm", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop", "--backup-history-limit", "30"), "bc")
	startAgent(t, ns, "db")
	bc, err := f.st.BackupConfigurations(ns).Get(ctx, "storm")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			bs := session.NewBackup(bc, fmt.Sprintf("storm-%02d", i))
			_, err := f.st.BackupSessions(ns).Create(ctx, bs, metav1.CreateOptions{})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("creating 20 sessions took %s", d)
	}
	var succeeded, skipped int
	eventually(t, 2*time.Minute, "every session to end", func() bool {
		l, err := f.st.BackupSessions(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		succeeded, skipped = 0, 0
		for _, bs := range l.Items {
			switch bs.Status.Phase {
			case stashv1beta1.BackupSessionSucceeded:
				succeeded++
			case stashv1beta1.BackupSessionSkipped:
				skipped++
				if !strings.Contains(bs.Status.Message, "still running") {
					t.Errorf("skipped session %s has no reason: %q", bs.Name, bs.Status.Message)
				}
			}
		}
		return succeeded+skipped == 20
	})
	if succeeded != 1 || skipped != 19 {
		t.Fatalf("storm: %d succeeded, %d skipped; want 1 and 19", succeeded, skipped)
	}
}
