package dumptee

import "syscall"

// The dump dies with this process: restic kills only its own child.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
