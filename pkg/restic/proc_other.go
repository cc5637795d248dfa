//go:build !unix

package restic

import "os/exec"

// Without process groups, canceling kills restic only (exec's default).
func setProcessGroup(*exec.Cmd) {}

func killProcessGroup(*exec.Cmd) {}
