package scratchdb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sweep cleans up after an agent that died with servers running: for each
// directory parent/prefix*, it kills any mariadbd whose command line names
// that directory's datadir (the pid file's, and any other such process, e.g.
// the install's bootstrap), then removes the directory. Call it at startup,
// before Start, with the parent and prefix the agent gives Start's Dir.
func Sweep(parent, prefix string) error {
	if prefix == "" {
		return errors.New("scratchdb: Sweep needs a prefix: it removes every parent/prefix* directory")
	}
	parent, err := filepath.Abs(parent)
	if err != nil {
		return fmt.Errorf("scratchdb: %w", err)
	}
	entries, err := os.ReadDir(parent)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("scratchdb: sweep: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			if err := sweepDir(filepath.Join(parent, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func sweepDir(dir string) error {
	datadir := filepath.Join(dir, "data")
	var pids []int
	if b, err := os.ReadFile(filepath.Join(dir, "mariadbd.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	pids = append(pids, pidsUsing(datadir)...)
	var errs []error
	for _, pid := range pids {
		if err := killUsing(pid, datadir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("scratchdb: sweep: remove %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// killUsing SIGKILLs pid, if its command line still names datadir (a
// reused pid does not), and waits until it is gone: the data is thrown
// away, so there is nothing to shut down cleanly.
func killUsing(pid int, datadir string) error {
	// Found before the check: on Linux p holds a pidfd, so a pid reused
	// after the check is not the one killed.
	p, err := os.FindProcess(pid)
	if err != nil || !usesDatadir(pid, datadir) {
		return nil
	}
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("scratchdb: kill pid %d on %s: %w", pid, datadir, err)
	}
	deadline := time.Now().Add(stopGrace)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("scratchdb: pid %d on %s still alive %s after SIGKILL", pid, datadir, stopGrace)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// usesDatadir reports whether /proc/PID/cmdline has --datadir=datadir.
func usesDatadir(pid int, datadir string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	want := []byte("--datadir=" + datadir)
	for _, arg := range bytes.Split(b, []byte{0}) {
		if bytes.Equal(arg, want) {
			return true
		}
	}
	return false
}

// pidsUsing lists the processes whose command line has --datadir=datadir
// (none where there is no /proc).
func pidsUsing(datadir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && usesDatadir(pid, datadir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid exists and is not a zombie (a zombie holds no
// files; its parent, maybe us, reaps it).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the parenthesized command name, which may hold ") ".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}
