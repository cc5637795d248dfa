//go:build !linux

package dumptee

import "syscall"

func childSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
