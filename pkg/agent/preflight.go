package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/database"
)

// ResticMinor is the restic line the agent is built and tested against
// (0.18.x): pkg/restic reads its exit codes and messages.
const ResticMinor = 18

// imageHint is the fix for a missing or wrong tool.
const imageHint = "run the agent from the image `make image` builds (it ships restic 0.18, mysqldump and mysql)"

// Tools are the binaries the agent runs, found when it starts, so that an
// image without one fails at once rather than at the first backup.
type Tools struct {
	Restic        string
	ResticVersion string
	// Warning is set when restic runs but is not the 0.18 line.
	Warning string
	Client  database.Client
}

// FindTools finds restic (resticBin when set, else next to the agent in
// exeDir, else on path) and the MySQL client on path, and runs `restic
// version`. path is a PATH value; the errors name it.
func FindTools(ctx context.Context, resticBin, exeDir, path string) (Tools, error) {
	var t Tools
	bin, err := findRestic(resticBin, exeDir, path)
	if err != nil {
		return t, err
	}
	t.Restic = bin
	if t.ResticVersion, t.Warning, err = resticVersion(ctx, bin); err != nil {
		return t, err
	}
	if t.Client, err = database.FindClientIn(path); err != nil {
		return t, err // it names the image already
	}
	return t, nil
}

func findRestic(resticBin, exeDir, path string) (string, error) {
	if resticBin != "" {
		p, err := database.LookPath(resticBin, path)
		if err != nil {
			return "", fmt.Errorf("--restic=%s: %w; %s", resticBin, err, imageHint)
		}
		return p, nil
	}
	if exeDir != "" {
		if p, err := database.LookPath(filepath.Join(exeDir, "restic"), ""); err == nil {
			return p, nil
		}
	}
	p, err := database.LookPath("restic", path)
	if err != nil {
		return "", fmt.Errorf("restic: %w: looked next to the agent (%s) and on PATH=%s; %s, or pass --restic", database.ErrNotFound, exeDir, path, imageHint)
	}
	return p, nil
}

var resticVersionLine = regexp.MustCompile(`^restic (\d+)\.(\d+)\.(\d+)`)

// resticVersion runs `restic version`; a restic older than 0.18 is an
// error, a newer one a warning.
func resticVersion(ctx context.Context, bin string) (version, warning string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "version")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("`%s version` failed: %w (%s); %s", bin, err, firstLine(errb.String()), imageHint)
	}
	line := firstLine(out.String())
	m := resticVersionLine.FindStringSubmatch(line)
	if m == nil {
		return "", "", fmt.Errorf("`%s version` printed %q, not a restic version; %s", bin, line, imageHint)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	version = m[1] + "." + m[2] + "." + m[3]
	switch {
	case major == 0 && minor < ResticMinor:
		return version, "", fmt.Errorf("%s is restic %s; the agent needs 0.%d.x; %s", bin, version, ResticMinor, imageHint)
	case major != 0 || minor != ResticMinor:
		warning = fmt.Sprintf("%s is restic %s; the agent is tested with 0.%d.x, and restic's messages may have changed", bin, version, ResticMinor)
	}
	return version, warning, nil
}

// TempDir is TMPDIR for everything the agent runs (restic, mysqldump,
// mysql): the scratch volume, since the pod's root filesystem is read-only.
func TempDir(scratch string) string { return filepath.Join(scratch, "tmp") }

// childEnv is the environment the agent adds for the MySQL clients it
// starts itself (restic gets TMPDIR through restic.Repo.TempDir).
func (a *Agent) childEnv() []string { return []string{"TMPDIR=" + TempDir(a.cfg.ScratchDir)} }

// PrepareScratch creates the scratch directory and its tmp (0700) and
// writes a file there, so that an unwritable scratch volume stops the
// agent at start-up rather than in the middle of a backup.
func PrepareScratch(scratch string) error {
	if scratch == "" {
		return errors.New("--scratch-dir is empty")
	}
	tmp := TempDir(scratch)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("scratch directory: %w: mount a writable volume (the rendered Deployment's emptyDir) at --scratch-dir=%s", err, scratch)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	f, err := os.CreateTemp(tmp, "probe-")
	if err != nil {
		return fmt.Errorf("scratch directory is not writable: %w: mount a writable volume (the rendered Deployment's emptyDir) at --scratch-dir=%s", err, scratch)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}
