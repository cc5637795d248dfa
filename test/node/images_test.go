package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// testVersion is the version BuildBinaries stamps, so the plugin renders
// the agent image built here.
const testVersion = "v0.0.0-test"

// images are the OCI archives the node imports.
type images struct {
	agent, mariadb string
	mariadbRef     string
	// mariadbUID is the user the MariaDB image's server runs as (mariadb.env).
	mariadbUID int64
}

func (i images) archives() []string { return []string{i.agent, i.mariadb} }

// buildImages builds the agent and MariaDB images as `make image` does, with
// the test version, into binDir/images. The Debian root filesystems are
// cached, so this takes seconds once warm.
func buildImages(root, binDir string) (images, error) {
	out := filepath.Join(binDir, "images")
	cmd := exec.Command("go", "run", "./hack/image", "-images", "agent,mariadb", "-out", out, "-version", testVersion)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return images{}, fmt.Errorf("hack/image: %w", err)
	}
	return images{
		agent:      filepath.Join(out, "stash-agent-image_"+testVersion+"_linux_amd64.tar"),
		mariadb:    filepath.Join(out, "stash-mariadb-image_"+testVersion+"_linux_amd64.tar"),
		mariadbRef: "localhost/stash-test/mariadb:10.11",
		mariadbUID: 999,
	}, nil
}

func testRoot() string { return testenv.RepoRoot() }
