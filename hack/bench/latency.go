package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// measureSlot resumes a config scheduled every few seconds and, polling
// /proc every 5 ms, takes the time from each slot (named in its session,
// `<config>-<slot unix seconds>`) to the start of its mysqldump.
func (b *bench) measureSlot(ctx context.Context) error {
	done := b.step(fmt.Sprintf("slot to mysqldump: schedule @every %s, %d slots", b.cfg.SlotEvery, b.cfg.Slots))
	defer done()
	agent := b.agents[abSrc]
	stop := procWatch{agentPid: agent.Pid(), every: 5 * time.Millisecond, dumpNeedle: tinyDB}.start()
	if _, _, err := b.kubectl(ctx, kubeTO, "stash", "-n", ns, "resume", "backupconfig", cfgSlot); err != nil {
		stop()
		return err
	}
	sel := metav1.ListOptions{LabelSelector: stashv1beta1.LabelInvokerName + "=" + cfgSlot}
	limit := time.Duration(b.cfg.Slots+3)*b.cfg.SlotEvery + time.Minute
	deadline := time.Now().Add(limit)
	var slots []time.Time
	var err error
	for {
		slots, err = b.sessionSlots(ctx, sel, true)
		if err != nil || len(slots) >= b.cfg.Slots {
			break
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("only %d of %d scheduled sessions of %s ended within %s (agent log %s)", len(slots), b.cfg.Slots, cfgSlot, limit, agent.LogPath)
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if err != nil {
			break
		}
	}
	w := stop()
	if _, _, perr := b.kubectl(ctx, kubeTO, "stash", "-n", ns, "pause", "backupconfig", cfgSlot); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	// Every session's slot, ended or not.
	if slots, err = b.sessionSlots(ctx, sel, false); err != nil {
		return err
	}
	// Each dump belongs to the latest slot at or before its start.
	for _, t := range w.DumpStarts {
		var best time.Time
		for _, s := range slots {
			if !s.After(t) && s.After(best) {
				best = s
			}
		}
		if best.IsZero() {
			continue
		}
		b.res.SlotToDump = append(b.res.SlotToDump, t.Sub(best))
	}
	if len(b.res.SlotToDump) < len(slots) {
		var ds, ss []string
		for _, t := range w.DumpStarts {
			ds = append(ds, t.Format("15:04:05.000"))
		}
		for _, t := range slots {
			ss = append(ss, t.Format("15:04:05"))
		}
		b.logf("   %d slots (%s) but %d dumps seen (%s), %d samples", len(slots), strings.Join(ss, " "), len(w.DumpStarts), strings.Join(ds, " "), w.Samples)
	}
	if len(b.res.SlotToDump) == 0 {
		// Reported as not measured rather than failing the whole run.
		b.logf("   WARNING: saw %d dumps but none matched the %d slots of %s", len(w.DumpStarts), len(slots), cfgSlot)
		return nil
	}
	b.logf("   slot to dump: %v", roundAll(b.res.SlotToDump))
	return nil
}

// sessionSlots lists the slots of a config's sessions, only those that
// ended when ended is set; a failed one is an error.
func (b *bench) sessionSlots(ctx context.Context, sel metav1.ListOptions, ended bool) ([]time.Time, error) {
	list, err := b.stash.BackupSessions(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list BackupSessions of %s: %w", cfgSlot, err)
	}
	var out []time.Time
	for _, bs := range list.Items {
		switch bs.Status.Phase {
		case stashv1beta1.BackupSessionSucceeded:
		case stashv1beta1.BackupSessionFailed:
			return nil, fmt.Errorf("scheduled BackupSession %s failed: %s", bs.Name, bs.Status.Message)
		default:
			if ended {
				continue
			}
		}
		i := strings.LastIndexByte(bs.Name, '-')
		sec, err := strconv.ParseInt(bs.Name[i+1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("scheduled BackupSession %q is not named <config>-<slot unix seconds>", bs.Name)
		}
		out = append(out, time.Unix(sec, 0))
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out, nil
}

// measureIdle samples the source's agent's RSS and CPU after it settled.
func (b *bench) measureIdle(ctx context.Context) error {
	done := b.step(fmt.Sprintf("idle agent: settle %s, then measure over %s", b.cfg.IdleSettle, b.cfg.IdleWindow))
	defer done()
	pid := b.agents[abSrc].Pid()
	if err := sleepCtx(ctx, b.cfg.IdleSettle); err != nil {
		return err
	}
	_, t0, err := procStat(pid)
	if err != nil {
		return fmt.Errorf("the agent's /proc/%d/stat: %w", pid, err)
	}
	start := time.Now()
	var samples []int64
	for time.Since(start) < b.cfg.IdleWindow {
		rss, err := procStatusKiB(pid, "VmRSS")
		if err != nil {
			return fmt.Errorf("the agent's VmRSS: %w", err)
		}
		samples = append(samples, rss)
		if err := sleepCtx(ctx, min(time.Second, b.cfg.IdleWindow-time.Since(start)+time.Millisecond)); err != nil {
			return err
		}
	}
	_, t1, err := procStat(pid)
	if err != nil {
		return fmt.Errorf("the agent's /proc/%d/stat: %w", pid, err)
	}
	win := time.Since(start)
	var sum int64
	for _, s := range samples {
		sum += s
	}
	b.res.IdleRSS = slices.Max(samples)
	b.res.IdleRSSMean = sum / int64(len(samples))
	b.res.IdleCPU = float64(t1-t0) / clockTicks / win.Seconds() * 100
	b.res.IdleWindow = win
	b.logf("   RSS %s (max), CPU %.2f%% of a core", humanBytes(b.res.IdleRSS<<10), b.res.IdleCPU)
	return nil
}

// measureStatus times `kubectl stash status` in a namespace with many
// BackupConfigurations, each with one session, and one agent.
func (b *bench) measureStatus(ctx context.Context) error {
	n := b.cfg.StatusConfigs
	done := b.step(fmt.Sprintf("kubectl stash status with %d BackupConfigurations", n))
	defer done()
	const sns = "bench-status"
	if _, _, err := b.kubectl(ctx, kubeTO, "create", "namespace", sns); err != nil {
		return err
	}
	if err := b.createSecret(ctx, sns, "db-auth", map[string]string{"username": b.src.User, "password": b.src.Password}); err != nil {
		return err
	}
	if err := b.createSecret(ctx, sns, "repo-creds", map[string]string{"RESTIC_PASSWORD": b.repoPass}); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"create", "repository", "repo", "--backend", "local", "--path", b.localRepo("status").Dir, "--secret", "repo-creds"},
		{"create", "appbinding", "db", "--url", "tcp(" + b.src.Addr() + ")/", "--secret", "db-auth", "--type", "mariadb", "--version", "10.11"},
	} {
		if _, _, err := b.kubectl(ctx, kubeTO, append([]string{"stash", "-n", sns}, args...)...); err != nil {
			return err
		}
	}
	slot := time.Now().Add(-24 * time.Hour).Truncate(time.Hour)
	for i := 0; i < n; i++ {
		bc := &stashv1beta1.BackupConfiguration{
			TypeMeta:   metav1.TypeMeta{APIVersion: stashv1beta1.GroupVersion.String(), Kind: stashv1beta1.KindBackupConfiguration},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("db-%03d", i), Namespace: sns},
			Spec: stashv1beta1.BackupConfigurationSpec{
				Schedule:   fmt.Sprintf("%d 2 * * *", i%60),
				Repository: stashv1beta1.RepositoryRef{Name: "repo"},
				Target: &stashv1beta1.BackupTarget{Ref: stashv1beta1.TargetRef{
					APIVersion: appcatalog.GroupVersion.String(), Kind: appcatalog.KindAppBinding, Name: "db"}},
			},
		}
		created, err := b.stash.BackupConfigurations(sns).Create(ctx, bc, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create BackupConfiguration %s/%s: %w", sns, bc.Name, err)
		}
		bs := session.NewBackup(created, fmt.Sprintf("%s-%d", created.Name, slot.Unix()))
		if _, err := b.stash.BackupSessions(sns).Create(ctx, bs, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create BackupSession %s/%s: %w", sns, bs.Name, err)
		}
	}
	if _, _, err := b.kubectl(ctx, kubeTO, "stash", "-n", sns, "agent", "apply", "--target", "appbinding/db"); err != nil {
		return err
	}
	b.res.StatusConfigs = n
	status := &series{Key: "status", Label: fmt.Sprintf("`kubectl stash status`, %d BackupConfigurations", n)}
	startup := &series{Key: "plugin", Label: "`kubectl stash version --client` (kubectl and plugin start-up)"}
	for i := 0; i < b.cfg.StatusRuns; i++ {
		out, d, err := b.kubectl(ctx, kubeTO, "stash", "-n", sns, "status")
		if err != nil {
			return err
		}
		if lines := strings.Count(out, "\n"); lines < n {
			return fmt.Errorf("kubectl stash status printed %d lines for %d BackupConfigurations", lines, n)
		}
		status.add(d)
		if _, d, err = b.kubectl(ctx, kubeTO, "stash", "version", "--client"); err != nil {
			return err
		}
		startup.add(d)
	}
	b.res.StatusLatency, b.res.PluginStartup = status, startup
	b.logf("   status %v, version --client %v", roundAll(status.Samples), roundAll(startup.Samples))
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
