package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// procArgv is a process's argv, or nil when it is gone.
func procArgv(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// procExists says whether /proc/PID is there (a zombie counts).
func procExists(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

// procStatusKiB reads a "VmRSS:   1234 kB" style field of /proc/PID/status.
func procStatusKiB(pid int, field string) (int64, error) {
	return kibField(filepath.Join("/proc", strconv.Itoa(pid), "status"), field)
}

// kibField reads a "Name:   1234 kB" line of a /proc file.
func kibField(path, field string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			f := strings.Fields(string(v))
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, field)
}

// procStat returns the parent pid and utime+stime (in clock ticks) from /proc/PID/stat.
func procStat(pid int) (ppid int, cpuTicks int64, err error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, 0, err
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat ppid: %w", pid, err)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat utime/stime: %v %v", pid, err1, err2)
	}
	return ppid, ut + st, nil
}

// procCPU returns a process's own CPU and that of its waited-for children
// (restic runs that ended), in clock ticks.
func procCPU(pid int) (self, children int64, err error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, 0, err
	}
	var v [4]int64
	for k := range v {
		v[k], _ = strconv.ParseInt(f[11+k], 10, 64) // utime, stime, cutime, cstime
	}
	return v[0] + v[1], v[2] + v[3], nil
}

// statFields are /proc/PID/stat's fields from the third (state) on: the
// command name (field 2) may hold spaces, so they are counted after its ')'.
// f[1] is the ppid, f[11..14] utime, stime, cutime, cstime.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return f, nil
}

// pidScanner reports the processes that appeared since its last scan.
type pidScanner struct {
	seen map[int]bool
}

func newPidScanner() *pidScanner {
	s := &pidScanner{seen: map[int]bool{}}
	s.fresh() // everything running now is old
	return s
}

// fresh lists the pids that were not there at the previous call.
func (s *pidScanner) fresh() []int {
	f, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	now := make(map[int]bool, len(names))
	var out []int
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		now[pid] = true
		if !s.seen[pid] {
			out = append(out, pid)
		}
	}
	s.seen = now
	return out
}

// isDump says whether argv runs mysqldump or mariadb-dump.
func isDump(argv []string) bool {
	if len(argv) == 0 {
		return false
	}
	b := filepath.Base(argv[0])
	return b == "mysqldump" || b == "mariadb-dump"
}

func isRestic(argv []string) bool { return len(argv) > 0 && filepath.Base(argv[0]) == "restic" }

func argvHas(argv []string, needle string) bool {
	for _, a := range argv {
		if strings.Contains(a, needle) {
			return true
		}
	}
	return false
}
