//go:build !linux

package scratchdb

import (
	"os"
	"syscall"
)

// The agent runs on Linux; elsewhere the server gets no process group
// and no parent-death signal, and Stop signals it alone.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, kill bool) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if kill {
		return p.Kill()
	}
	return p.Signal(syscall.SIGTERM)
}
