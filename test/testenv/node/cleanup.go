package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const cgroupFS = "/sys/fs/cgroup"

// cgroupHierarchies lists the mounted cgroup v1 hierarchies.
func cgroupHierarchies() []string { return hierarchiesIn(cgroupFS) }

func hierarchiesIn(root string) []string {
	ents, _ := os.ReadDir(root)
	var out []string
	for _, e := range ents {
		p := filepath.Join(root, e.Name())
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			continue // cpu,cpuacct style links
		}
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// killCgroupTree sends SIGKILL to every process in root's cgroups, in every
// hierarchy, until none is left or 10 s have passed.
func killCgroupTree(root string) { killAll(func() []int { return cgroupPids(root) }) }

// killAll sends SIGKILL to the processes list names until it names none,
// or 10 s have passed.
func killAll(list func() []int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pids := list()
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cgroupPids(root string) []int {
	seen := map[int]bool{}
	for _, h := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, root), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	out := make([]int, 0, len(seen))
	for pid := range seen {
		out = append(out, pid)
	}
	return out
}

// removeCgroupTree removes root's cgroups, deepest first, in every hierarchy.
func removeCgroupTree(root string) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, root), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			// A cgroup whose last task just died can be busy for a moment.
			var err error
			for i := 0; i < 50; i++ {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// netnsID is the inode that names a network namespace, from a /proc/PID/ns/net
// link or a /run/netns file.
func netnsID(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// netnsPids lists the processes, other than this one, in the network
// namespace with the given inode: the node's daemons and containerd's shims.
func netnsPids(id uint64) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if ino, err := netnsID(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && ino == id {
			out = append(out, pid)
		}
	}
	return out
}

// killNetnsPeers kills every other process in this process's network namespace.
func killNetnsPeers() {
	id, err := netnsID("/proc/self/ns/net")
	if err != nil {
		return
	}
	killNetns(id)
}

func killNetns(id uint64) { killAll(func() []int { return netnsPids(id) }) }
