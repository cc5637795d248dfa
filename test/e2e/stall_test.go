package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// stallSQL is a database whose dump (about 16 MB with --hex-blob) is far
// larger than a pipe buffer and than what restic reads before it stops.
const stallSQL = `
CREATE DATABASE IF NOT EXISTS stall;
USE stall;
CREATE TABLE IF NOT EXISTS big (id INT PRIMARY KEY AUTO_INCREMENT, payload BLOB) ENGINE=InnoDB;
INSERT INTO big (payload) SELECT RANDOM_BYTES(1024) FROM seq_1_to_8000 WHERE (SELECT COUNT(*) FROM big) = 0;
`

// breakTempDir makes dir unwritable, as the pod's read-only root
// filesystem made /tmp: a read-only bind mount of it onto itself (root
// ignores file modes), else a regular file in its place. undo restores it.
func breakTempDir(t *testing.T, dir string) (undo func()) {
	t.Helper()
	mount := func(args ...string) error { return exec.Command("mount", args...).Run() }
	if mount("--bind", dir, dir) == nil {
		if err := mount("-o", "remount,bind,ro", dir, dir); err == nil {
			done := false
			undo = func() {
				if !done {
					done = true
					_ = exec.Command("umount", dir).Run()
				}
			}
			t.Cleanup(undo)
			return undo
		}
		_ = exec.Command("umount", dir).Run()
	}
	t.Logf("no read-only bind mount here; a file replaces %s", dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		_ = os.Remove(dir)
		_ = os.Mkdir(dir, 0o700)
	}
}

// TestStalledBackupFails reproduces the deadlock of issue 13 on purpose:
// restic's TMPDIR (the agent's <scratch>/tmp) becomes unwritable after the
// agent started, and the dump is larger than a pipe buffer. restic 0.18.1
// then stops reading the dump and waits for it while the dump blocks on
// the full pipe. The agent sees the stream standing still (--stall-timeout
// 3s, rendered by the plugin into the Deployment's args), stops both, and
// fails the session with restic's own cause within the stall timeout +
// 30 s of the trigger. The next backup, with TMPDIR writable again,
// succeeds.
func TestStalledBackupFails(t *testing.T) {
	f := newBackupFixture(t, "stall-e2e", s.env.MariaDBs[0])
	ns := f.ns
	if _, err := f.db.Exec(context.Background(), stallSQL); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f.localRepo(t, dir)
	const stall = 3 * time.Second
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "stall", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases stall", "--stall-timeout", stall.String()), "bc")
	agent := startAgent(t, ns, "db")
	tmp := filepath.Join(agent.Scratch, "tmp")
	eventually(t, 30*time.Second, "the agent to create its TMPDIR", func() bool {
		st, err := os.Stat(tmp)
		return err == nil && st.IsDir() && logHas(agent.LogPath, "tools found")
	})
	undo := breakTempDir(t, tmp)

	r := kubectl(t, "", "stash", "-n", ns, "trigger", "stall")
	mustOK(t, r, "trigger")
	start := time.Now()
	name := createdName(r.stdout)
	bound := stall + 30*time.Second
	bs := waitPhase(t, f, name, bound, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	took := time.Since(start)
	t.Logf("session %s %s %s after the trigger (bound %s): %s", name, bs.Status.Phase, took.Round(100*time.Millisecond), bound, bs.Status.Message)
	if bs.Status.Phase != stashv1beta1.BackupSessionFailed {
		t.Fatalf("session %s: %s", name, bs.Status.Phase)
	}
	msg := bs.Status.Message
	for _, w := range []string{"stalled", "restic read nothing of the dump for 3s", "restic-temp-pack", "TMPDIR=" + tmp} {
		if !strings.Contains(msg, w) {
			t.Errorf("message does not say %q: %s", w, msg)
		}
	}
	if !strings.Contains(msg, "read-only file system") && !strings.Contains(msg, "not a directory") {
		t.Errorf("message lacks restic's cause: %s", msg)
	}
	eventually(t, 10*time.Second, "a BackupSessionFailed Event with restic's cause", func() bool {
		evs, err := kube(t).CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Reason == "BackupSessionFailed" && strings.Contains(e.Message, "restic-temp-pack") {
				return true
			}
		}
		return false
	})
	for _, prog := range []string{"restic", "mysqldump", "mariadb-dump"} {
		if pid := findProcess(prog, agent.Scratch); pid != 0 {
			t.Errorf("%s (pid %d) still runs after the stall", prog, pid)
		}
	}
	if n := resticSnapshots(t, dir, f.repoPass, nil); n != 0 {
		t.Errorf("%d snapshots after a stalled backup", n)
	}

	// The agent is not wedged: with TMPDIR writable, the next one succeeds.
	undo()
	r = kubectl(t, "", "stash", "-n", ns, "trigger", "stall")
	mustOK(t, r, "trigger again")
	bs = waitPhase(t, f, createdName(r.stdout), 2*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded {
		t.Fatalf("backup after the stall: %s: %s", bs.Status.Phase, bs.Status.Message)
	}
}
