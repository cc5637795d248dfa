//go:build unix

package restic

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup puts restic in its own process group, with the backup
// command it starts, so that canceling reaches both.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// SIGTERM first: restic then removes its lock and exits.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
}

// killProcessGroup kills whatever is left of the group once restic is gone:
// a backup command's stray children, or everything after WaitDelay killed
// only restic itself.
func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
