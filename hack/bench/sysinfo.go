package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

type machineInfo struct {
	CPU    string
	Cores  int
	MemGiB float64
	Kernel string
	OS     string
}

type versionInfo struct {
	Go, Restic, MariaDB, APIServer, Kubectl, Commit string
}

func readMachine() machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), CPU: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if kib, err := kibField("/proc/meminfo", "MemTotal"); err == nil {
		m.MemGiB = float64(kib) / (1 << 20)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

// readVersions asks each tool for its version; a tool that does not
// answer is reported as such.
func readVersions(ctx context.Context, toolBin, restic string) versionInfo {
	first := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = testenv.RepoRoot()
		out, err := cmd.Output()
		if err != nil {
			return "unknown (" + filepath.Base(name) + ": " + err.Error() + ")"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	v := versionInfo{
		Go:        first("go", "version"),
		Restic:    first(restic, "version"),
		MariaDB:   first("mariadb", "--version"),
		APIServer: first(filepath.Join(toolBin, "kube-apiserver"), "--version"),
		Kubectl:   first("kubectl", "version", "--client"),
		Commit:    first("git", "rev-parse", "--short", "HEAD"),
	}
	if out := first("git", "status", "--porcelain", "--untracked-files=no"); out != "" && !strings.HasPrefix(out, "unknown") {
		v.Commit += " (with uncommitted changes)"
	}
	return v
}
