// Package generate checks that the committed CRDs and deepcopy code match
// what controller-gen makes from pkg/apis today.
package generate

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

func TestGeneratedFilesAreCurrent(t *testing.T) {
	root := testenv.RepoRoot()
	cg := filepath.Join(root, "bin", "controller-gen")
	if _, err := os.Stat(cg); err != nil {
		t.Fatalf("controller-gen missing: run `make tools` (%v)", err)
	}
	// Regenerate in a copy, so the check never edits the tree.
	tmp := t.TempDir()
	for _, p := range []string{"go.mod", "go.sum", "hack/boilerplate.go.txt", "pkg/apis"} {
		copyTree(t, filepath.Join(root, p), filepath.Join(tmp, p))
	}
	cmd := exec.Command(cg, "object:headerFile=hack/boilerplate.go.txt", "paths=./pkg/apis/...",
		"crd:crdVersions=v1,maxDescLen=200", "output:crd:artifacts:config=manifests/crds")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, out)
	}
	stale := compareTrees(t, filepath.Join(root, "manifests/crds"), filepath.Join(tmp, "manifests/crds"), ".yaml")
	stale = append(stale, compareTrees(t, filepath.Join(root, "pkg/apis"), filepath.Join(tmp, "pkg/apis"), "zz_generated.deepcopy.go")...)
	if len(stale) > 0 {
		t.Fatalf("generated files are out of date; run `make generate` and commit:\n  %s", strings.Join(stale, "\n  "))
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// compareTrees lists files ending in suffix that differ, or exist on one side only.
func compareTrees(t *testing.T, committed, fresh, suffix string) []string {
	t.Helper()
	seen := map[string]bool{}
	var diff []string
	walk := func(dir string, f func(rel string, b []byte)) {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, suffix) {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			f(rel, b)
			return nil
		})
	}
	want := map[string][]byte{}
	walk(fresh, func(rel string, b []byte) { want[rel] = b })
	walk(committed, func(rel string, b []byte) {
		seen[rel] = true
		if w, ok := want[rel]; !ok || !bytes.Equal(w, b) {
			diff = append(diff, filepath.Join(filepath.Base(committed), rel))
		}
	})
	for rel := range want {
		if !seen[rel] {
			diff = append(diff, filepath.Join(filepath.Base(committed), rel)+" (missing)")
		}
	}
	return diff
}
