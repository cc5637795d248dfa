package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-stash/kubectl-stash/pkg/database"
)

// fakeTool writes an executable shell script name into dir.
func fakeTool(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// toolDir is a PATH directory with a restic printing version and the
// MySQL client binaries named in client.
func toolDir(t *testing.T, version string, client ...string) string {
	t.Helper()
	dir := t.TempDir()
	if version != "" {
		fakeTool(t, dir, "restic", "echo 'restic "+version+" compiled with go1.24.4 on linux/amd64'")
	}
	for _, c := range client {
		fakeTool(t, dir, c, "exit 0")
	}
	return dir
}

// TestFindToolsNamesWhatIsMissing: an image that lacks a binary fails at
// start-up, naming the binary, the PATH searched and the fix.
func TestFindToolsNamesWhatIsMissing(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name      string
		version   string
		client    []string
		want      []string
		namesPath bool
	}{
		{"no restic", "", []string{"mysqldump", "mysql"}, []string{"restic", "make image"}, true},
		{"no dump", "0.18.1", []string{"mysql"}, []string{"mysqldump nor mariadb-dump", "make image"}, true},
		{"no mysql", "0.18.1", []string{"mariadb-dump"}, []string{"mysql nor mariadb", "make image"}, true},
		{"old restic", "0.16.4", []string{"mysqldump", "mysql"}, []string{"restic 0.16.4", "needs 0.18.x", "make image"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := toolDir(t, c.version, c.client...)
			_, err := FindTools(ctx, "", "", dir)
			if err == nil {
				t.Fatal("FindTools succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if c.namesPath && !strings.Contains(err.Error(), "PATH="+dir) {
				t.Errorf("error %q does not name the PATH searched (%s)", err, dir)
			}
		})
	}
}

func TestFindToolsFindsTheImagesTools(t *testing.T) {
	dir := toolDir(t, "0.18.1", "mariadb-dump", "mariadb")
	tools, err := FindTools(context.Background(), "", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if tools.Restic != filepath.Join(dir, "restic") || tools.ResticVersion != "0.18.1" || tools.Warning != "" {
		t.Errorf("restic: %+v", tools)
	}
	if tools.Client.Dump != filepath.Join(dir, "mariadb-dump") || tools.Client.MySQL != filepath.Join(dir, "mariadb") {
		t.Errorf("client: %+v", tools.Client)
	}
	// restic next to the agent wins over PATH; a newer line only warns.
	exeDir := toolDir(t, "0.19.0")
	tools, err = FindTools(context.Background(), "", exeDir, dir)
	if err != nil {
		t.Fatal(err)
	}
	if tools.Restic != filepath.Join(exeDir, "restic") || !strings.Contains(tools.Warning, "0.19.0") {
		t.Errorf("next to the agent: %+v", tools)
	}
	// --restic names a binary that is not there.
	if _, err := FindTools(context.Background(), "/nonexistent/restic", "", dir); !errors.Is(err, database.ErrNotFound) || !strings.Contains(err.Error(), "--restic=/nonexistent/restic") {
		t.Errorf("--restic missing: %v", err)
	}
}

func TestPrepareScratchCreatesAPrivateTempDir(t *testing.T) {
	scratch := filepath.Join(t.TempDir(), "scratch")
	if err := PrepareScratch(scratch); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(TempDir(scratch))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v", TempDir(scratch), st, err)
	}
	// A file where the directory should be: the agent does not start.
	bad := t.TempDir()
	if err := os.WriteFile(TempDir(bad), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := PrepareScratch(bad); err == nil || !strings.Contains(err.Error(), "--scratch-dir="+bad) {
		t.Errorf("unusable scratch: %v", err)
	}
}
