package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The registry is how nodes on one machine share what is the machine's: it
// holds a file per running node (naming its state directory) and the
// kernel sysctls as they were before the first node started. Those are
// restored when the last node goes, so two nodes at once (two test
// packages) never restore each other's changes. It lives in the temporary
// directory, which the supervisor sees too (its /run is private).
func registryDir() string { return filepath.Join(os.TempDir(), "stash-node-registry") }

const sysctlsFile = "sysctls.json"

// locked runs f under the registry's lock.
func locked(f func(dir string) error) error {
	dir := registryDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lf, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	return f(dir)
}

// register records a node and, for the first one, the machine's sysctls.
func register(p *Plan) error {
	return locked(func(dir string) error {
		if _, err := os.Stat(filepath.Join(dir, sysctlsFile)); errors.Is(err, os.ErrNotExist) {
			saved := map[string]string{}
			for _, k := range kernelSysctls() {
				b, err := os.ReadFile("/proc/sys/" + k)
				if err != nil {
					return fmt.Errorf("read sysctl %s: %w", k, err)
				}
				saved[k] = strings.TrimSpace(string(b))
			}
			b, _ := json.Marshal(saved)
			if err := os.WriteFile(filepath.Join(dir, sysctlsFile), b, 0o600); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(dir, p.Netns), []byte(p.Dir), 0o600)
	})
}

// unregister forgets a node; when it was the last, the machine's sysctls
// are restored. It is safe to call twice.
func unregister(p *Plan) error {
	return locked(func(dir string) error {
		_ = os.Remove(filepath.Join(dir, p.Netns))
		if len(registeredIn(dir)) > 0 {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(dir, sysctlsFile))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		var saved map[string]string
		if err := json.Unmarshal(b, &saved); err != nil {
			return err
		}
		if err := restoreSysctls(saved); err != nil {
			return err
		}
		return os.Remove(filepath.Join(dir, sysctlsFile))
	})
}

// registeredIn lists the registered nodes: network namespace -> state dir.
func registeredIn(dir string) map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "stash-node-") {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			out[e.Name()] = string(b)
		}
	}
	return out
}

// supervisorAlive says whether a node's supervisor still runs; a node that
// registered moments ago and has none yet counts as alive.
func supervisorAlive(stateDir string) bool {
	b, err := os.ReadFile(filepath.Join(stateDir, "supervisor.pid"))
	if err != nil {
		st, err := os.Stat(stateDir)
		return err == nil && time.Since(st.ModTime()) < 2*time.Minute
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A reused pid is not our supervisor.
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.Contains(string(cmd), "supervise")
}

func restoreSysctls(saved map[string]string) error {
	var errs []error
	for k, v := range saved {
		cur, _ := os.ReadFile("/proc/sys/" + k)
		if strings.TrimSpace(string(cur)) == v {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, v, err))
		}
	}
	return errors.Join(errs...)
}
