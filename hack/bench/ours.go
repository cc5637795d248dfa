package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// oursRun is one `kubectl stash trigger --wait` or `restore --wait`.
type oursRun struct {
	d        time.Duration
	session  string
	snapshot string
	watch    watchResult
	started  time.Time
}

// trigger times `kubectl stash trigger CONFIG --wait` until Succeeded while
// watching the agent's processes, and reads the session's snapshot.
func (b *bench) trigger(ctx context.Context, config string) (oursRun, error) {
	agent := b.agents[abSrc]
	stop := procWatch{agentPid: agent.Pid(), every: 25 * time.Millisecond}.start()
	start := time.Now()
	out, d, err := b.kubectl(ctx, sessionTO+time.Minute, "stash", "-n", ns, "trigger", config, "--wait", "--timeout", sessionTOs)
	w := stop()
	if err != nil {
		return oursRun{}, fmt.Errorf("kubectl stash trigger %s: %w (agent log %s)", config, err, agent.LogPath)
	}
	r := oursRun{d: d, watch: w, started: start, session: createdName(out, "backupsession.stash.appscode.com/")}
	bs, err := b.stash.BackupSessions(ns).Get(ctx, r.session)
	if err != nil {
		return r, fmt.Errorf("read BackupSession %q: %w", r.session, err)
	}
	if bs.Status.Phase != stashv1beta1.BackupSessionSucceeded || len(bs.Status.Targets) == 0 || len(bs.Status.Targets[0].Stats) == 0 ||
		len(bs.Status.Targets[0].Stats[0].Snapshots) == 0 {
		return r, fmt.Errorf("BackupSession %s: phase %s and no snapshot in its status", r.session, bs.Status.Phase)
	}
	r.snapshot = bs.Status.Targets[0].Stats[0].Snapshots[0].Name
	return r, nil
}

// measureBackups measures figures a to e on the same data.
func (b *bench) measureBackups(ctx context.Context) error {
	runs := b.cfg.Runs
	res := b.res

	done := b.step("a. raw mysqldump > /dev/null")
	plain := &series{Key: "dump", Label: "`mysqldump --single-transaction --all-databases > /dev/null`"}
	agentFlags := &series{Key: "dump-agent", Label: "`mysqldump` with the agent's flags `> /dev/null`"}
	plainArgv := []string{b.db.Dump, "--defaults-extra-file=" + b.src.OptionFile(), "--single-transaction", "--all-databases"}
	// One dump first, not timed, so that every figure starts from the same page cache.
	if _, err := b.timeDump(ctx, b.dumpArgv()); err != nil {
		return err
	}
	for i := 0; i < runs; i++ {
		d, err := b.timeDump(ctx, plainArgv)
		if err != nil {
			return err
		}
		plain.add(d)
		if d, err = b.timeDump(ctx, b.dumpArgv()); err != nil {
			return err
		}
		agentFlags.add(d)
	}
	res.Backup = append(res.Backup, plain, agentFlags)
	done()

	done = b.step("b. Stash's pipeline: mysqldump | restic backup --stdin, new repository")
	stash := &series{Key: "stash", Label: "Stash's pipeline `mysqldump | restic backup --stdin` (new repository)"}
	for i := 0; i < runs; i++ {
		d, sum, peak, err := b.stashPipeline(ctx, b.localRepo("stash-pipeline"))
		if err != nil {
			return err
		}
		stash.add(d)
		res.Data.DumpBytes = int64(sum.TotalBytesProcessed)
		res.ResticStashPeak = max(res.ResticStashPeak, peak)
		b.logf("   %s, %s dump, %s stored", d.Round(time.Millisecond), humanBytes(int64(sum.TotalBytesProcessed)), humanBytes(int64(sum.DataAddedPacked)))
	}
	for _, s := range []*series{plain, agentFlags, stash} {
		s.Bytes = res.Data.DumpBytes
	}
	res.Backup = append(res.Backup, stash)
	done()

	done = b.step("c. ours end to end: kubectl stash trigger --wait, new local repository")
	local := &series{Key: "ours-local", Label: "ours: `kubectl stash trigger --wait`, local repository (new)", Bytes: res.Data.DumpBytes}
	for i := 0; i < runs; i++ {
		if err := b.freshRepo(ctx, b.localRepo(repoLocal)); err != nil {
			return err
		}
		r, err := b.trigger(ctx, cfgLocal)
		if err != nil {
			return err
		}
		local.add(r.d)
		b.noteWatch(r)
	}
	res.Backup = append(res.Backup, local)
	done()

	done = b.step("c. ours end to end: kubectl stash trigger --wait, new S3 repository")
	s3 := &series{Key: "ours-s3", Label: "ours: `kubectl stash trigger --wait`, S3 repository (new)", Bytes: res.Data.DumpBytes}
	for i := 0; i < runs; i++ {
		if err := b.freshRepo(ctx, b.s3Repo(s3Prefix)); err != nil {
			return err
		}
		r, err := b.trigger(ctx, cfgS3)
		if err != nil {
			return err
		}
		s3.add(r.d)
		b.noteWatch(r)
	}
	res.Backup = append(res.Backup, s3)
	done()

	done = b.step("d. ours: a second backup, nothing changed")
	same := &series{Key: "ours-unchanged", Label: "ours: second backup, nothing changed (local)", Bytes: res.Data.DumpBytes}
	for i := 0; i < runs; i++ {
		r, err := b.trigger(ctx, cfgLocal)
		if err != nil {
			return err
		}
		same.add(r.d)
		b.noteWatch(r)
		snap, err := b.snapshot(ctx, b.localRepo(repoLocal), r.snapshot)
		if err != nil {
			return err
		}
		res.AddedUnchanged = append(res.AddedUnchanged, int64(snap.Summary.DataAddedPacked))
	}
	res.Backup = append(res.Backup, same)
	done()

	done = b.step("e. ours: a backup after 1% of the rows changed")
	changed := &series{Key: "ours-changed", Label: "ours: backup after 1% of the rows changed (local)", Bytes: res.Data.DumpBytes}
	for i := 0; i < runs; i++ {
		n, err := changeOnePercent(ctx, b.src, res.Data, i+1)
		if err != nil {
			return err
		}
		res.Data.Changed = n
		r, err := b.trigger(ctx, cfgLocal)
		if err != nil {
			return err
		}
		changed.add(r.d)
		b.noteWatch(r)
		snap, err := b.snapshot(ctx, b.localRepo(repoLocal), r.snapshot)
		if err != nil {
			return err
		}
		res.AddedChanged = append(res.AddedChanged, int64(snap.Summary.DataAddedPacked))
		b.logf("   %s, %d rows changed, %s added", r.d.Round(time.Millisecond), n, humanBytes(int64(snap.Summary.DataAddedPacked)))
	}
	res.Backup = append(res.Backup, changed)
	done()
	return nil
}

// noteWatch keeps the peaks and the start/finish breakdown of one backup.
func (b *bench) noteWatch(r oursRun) {
	res := b.res
	w := r.watch
	res.AgentBackupRSS = max(res.AgentBackupRSS, w.AgentPeakRSS)
	res.AgentBackupHWM = max(res.AgentBackupHWM, w.AgentHWM)
	res.ResticAgentPeak = max(res.ResticAgentPeak, w.ResticPeak)
	if len(w.DumpStarts) > 0 {
		res.StartLatency = append(res.StartLatency, w.DumpStarts[0].Sub(r.started))
		res.FinishLatency = append(res.FinishLatency, r.started.Add(r.d).Sub(w.DumpEnd))
	}
	b.logf("   %s (session %s; agent RSS peak %s, restic peak %s)", r.d.Round(time.Millisecond), r.session,
		humanBytes(w.AgentPeakRSS<<10), humanBytes(w.ResticPeak<<10))
}

// measureRestores measures f and g on the latest snapshot of the local repository.
func (b *bench) measureRestores(ctx context.Context) error {
	runs := b.cfg.Runs
	res := b.res
	loc := b.localRepo(repoLocal)
	snap, err := b.snapshot(ctx, loc, "latest")
	if err != nil {
		return err
	}

	done := b.step("f. raw restore: mariadb < dump.sql into an empty target")
	path := filepath.Join(b.work, "dump.sql")
	size, err := b.writeDumpFile(ctx, loc, snap, path)
	if err != nil {
		return err
	}
	raw := &series{Key: "raw-restore", Label: "`mariadb < dump.sql` (the agent's client flags), empty target", Bytes: size}
	for i := 0; i < runs; i++ {
		d, err := b.rawRestore(ctx, path)
		if err != nil {
			return err
		}
		raw.add(d)
		b.logf("   %s", d.Round(time.Millisecond))
	}
	res.Restore = append(res.Restore, raw)
	done()

	done = b.step("g. ours end to end: kubectl stash restore --wait into an empty target")
	ours := &series{Key: "ours-restore", Label: "ours: `kubectl stash restore --wait`, local repository, empty target", Bytes: size}
	agent := b.agents[abDst]
	for i := 0; i < runs; i++ {
		if err := emptyTarget(ctx, b.dst); err != nil {
			return err
		}
		stop := procWatch{agentPid: agent.Pid(), every: 100 * time.Millisecond}.start()
		_, d, err := b.kubectl(ctx, sessionTO+time.Minute, "stash", "-n", ns, "restore", "--repository", repoLocal,
			"--target", "appbinding/"+abDst, "--snapshot", snap.ID, "--wait", "--timeout", sessionTOs)
		w := stop()
		if err != nil {
			return fmt.Errorf("kubectl stash restore: %w (agent log %s)", err, agent.LogPath)
		}
		ours.add(d)
		res.AgentRestoreRSS = max(res.AgentRestoreRSS, w.AgentPeakRSS)
		b.logf("   %s (agent RSS peak %s)", d.Round(time.Millisecond), humanBytes(w.AgentPeakRSS<<10))
	}
	res.Restore = append(res.Restore, ours)
	// The restore really happened: the target holds the source's rows.
	if err := verifyRows(ctx, b.dst, res.Data); err != nil {
		return fmt.Errorf("after kubectl stash restore: %w", err)
	}
	done()
	return nil
}
