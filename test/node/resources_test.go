package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// containerMemoryCgroup is the memory cgroup (v1) of a Pod's container.
func containerMemoryCgroup(t *testing.T, ns, pod string) string {
	t.Helper()
	p, err := s.kube.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Status.ContainerStatuses) == 0 {
		t.Fatal("no container status")
	}
	_, id, _ := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
	var found string
	_ = filepath.WalkDir(filepath.Join("/sys/fs/cgroup/memory", s.node.Plan.CgroupRoot), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && filepath.Base(path) == id {
			found = path
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no memory cgroup for container %s of %s/%s", id, ns, pod)
	}
	return found
}

func readInt(path string) int64 {
	b, _ := os.ReadFile(path)
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// memStat reads "key value" from a cgroup file such as memory.stat.
func memStat(dir, file, key string) int64 {
	b, _ := os.ReadFile(filepath.Join(dir, file))
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// TestLargeBackupWithinLimits: a backup of about 1 GiB runs under the
// rendered Deployment's memory limit without being OOM-killed, and the
// agent's real peak (its Go heap, restic, the dump client) is reported.
func TestLargeBackupWithinLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("a 1 GiB backup")
	}
	f := newAgentFixture(t, "resources")
	// About 1 GiB of dump in 1 KiB rows of base64 noise, which neither
	// deduplicates nor compresses much: the worst case for restic's memory.
	f.db.sql(t, "CREATE DATABASE big; USE big; CREATE TABLE big.t (id INT PRIMARY KEY, p TEXT) ENGINE=InnoDB;")
	for i := 0; i < 5; i++ {
		lo, hi := i*200000+1, (i+1)*200000
		f.db.sql(t, fmt.Sprintf("USE big; INSERT INTO big.t SELECT seq, TO_BASE64(RANDOM_BYTES(768)) FROM seq_%d_to_%d;", lo, hi))
	}
	pod := agentPod(t, f.ns, "mysql", 2*time.Minute)
	limit := pod.Spec.Containers[0].Resources.Limits.Memory()
	cg := containerMemoryCgroup(t, f.ns, pod.Name)

	var mu sync.Mutex
	var peakRSS int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v := memStat(cg, "memory.stat", "total_rss"); v > 0 {
					mu.Lock()
					peakRSS = max(peakRSS, v)
					mu.Unlock()
				}
			}
		}
	}()
	began := time.Now()
	name := f.trigger(t)
	bs := f.waitPhase(t, name, 10*time.Minute, stashv1beta1.BackupSessionSucceeded, stashv1beta1.BackupSessionFailed)
	close(stop)
	wg.Wait()
	if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded {
		t.Fatalf("1 GiB backup: %s: %s", bs.Status.Phase, bs.Status.Message)
	}
	if _, restarts := podState(t, f.ns, pod.Name); restarts != 0 {
		p, _ := s.kube.CoreV1().Pods(f.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		t.Fatalf("the agent restarted during the backup: %s", podSummary(p))
	}
	maxUsage := readInt(filepath.Join(cg, "memory.max_usage_in_bytes"))
	t.Logf("1 GiB backup in %s: %s; agent container peak RSS %d MiB, peak usage with page cache %d MiB, limit %s, OOM events %d",
		time.Since(began).Round(time.Second), bs.Status.Message, peakRSS>>20, maxUsage>>20, limit, memStat(cg, "memory.oom_control", "oom_kill"))
	if req := pod.Spec.Containers[0].Resources.Requests.Memory(); peakRSS > req.Value() {
		t.Errorf("peak RSS %d MiB is above the rendered memory request %s: raise it", peakRSS>>20, req)
	}
	if peakRSS > limit.Value()*3/4 {
		t.Errorf("peak RSS %d MiB leaves under a quarter of the %s limit: raise it", peakRSS>>20, limit)
	}
}
