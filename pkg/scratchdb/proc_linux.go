package scratchdb

import (
	"errors"
	"os"
	"syscall"
)

// sysProcAttr gives the child its own process group, for Stop to signal,
// and SIGKILL if the agent dies. Pdeathsig fires when the forking thread
// ends; Go ends threads only under runtime.LockOSThread, so do not call
// Start from a locked goroutine that exits.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends SIGTERM, or SIGKILL, to the process group led by pid.
func signalGroup(pid int, kill bool) error {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
