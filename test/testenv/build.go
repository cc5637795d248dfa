package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// GoBuild builds a package of this repository into out, without cgo.
func GoBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, b)
	}
	return nil
}

// BuildBinaries builds kubectl-stash and stash-agent from the working tree
// into dir, so tests always run the code under test.
func BuildBinaries(dir string) error {
	root := RepoRoot()
	for name, pkg := range map[string]string{"kubectl-stash": "./cmd/kubectl-stash", "stash-agent": "./cmd/agent"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name),
			"-ldflags", "-X github.com/kubectl-stash/kubectl-stash/pkg/version.Version=v0.0.0-test", pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w: %s", pkg, err, out)
		}
	}
	return nil
}
