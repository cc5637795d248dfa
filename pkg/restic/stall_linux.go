package restic

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// processIO is rchar+wchar of pid (/proc/PID/io): every byte it read or
// wrote, pipes and sockets included; -1 when unknown.
func processIO(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return -1
	}
	var total int64 = -1
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "rchar" && k != "wchar" {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return -1
		}
		total = max(total, 0) + n
	}
	return total
}

// procStat is the parent and process group of one process.
type procStat struct{ pid, ppid, pgrp int }

// processes lists every process's parent and group (/proc/PID/stat).
func processes() []procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces and ")".
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 {
			continue
		}
		ppid, err1 := strconv.Atoi(f[1])
		pgrp, err2 := strconv.Atoi(f[2])
		if err1 == nil && err2 == nil {
			out = append(out, procStat{pid, ppid, pgrp})
		}
	}
	return out
}

// childPipeQueued is how many bytes wait unread in the pipe on the
// standard output of pid's child (the dump restic runs); -1 when there is
// no child or its stdout is not a pipe.
func childPipeQueued(pid int) int {
	for _, p := range processes() {
		if p.ppid == pid {
			if n := pipeQueued(p.pid, 1); n >= 0 {
				return n
			}
		}
	}
	return -1
}

// pipeQueued opens fd of pid through /proc (a new reader of the same
// pipe, closed at once and never read from) and asks how many bytes wait
// in it.
func pipeQueued(pid, fd int) int {
	path := "/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd)
	h, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	defer syscall.Close(h)
	var st syscall.Stat_t
	if err := syscall.Fstat(h, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return -1
	}
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(h), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return -1
	}
	return int(n)
}

// killGroupExcept kills every process of pid's group but pid itself: the
// dump restic runs, and whatever that started. restic then sees its
// command fail and reports its own error.
func killGroupExcept(pid int) {
	for _, p := range processes() {
		if p.pgrp == pid && p.pid != pid {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}
