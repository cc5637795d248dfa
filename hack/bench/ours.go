package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
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
	// Earlier runs' writes reach the disk now, not during this one.
	syscall.Sync()
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

// measureBackups measures figures a to e on the same data. a, b and c
// take turns in each round, so that a slower stretch of the (shared)
// machine does not fall on one of them only.
func (b *bench) measureBackups(ctx context.Context) error {
	runs := b.cfg.Runs
	res := b.res
	plain := &series{Key: "dump", Label: "`mysqldump --single-transaction --all-databases > /dev/null`"}
	agentFlags := &series{Key: "dump-agent", Label: "`mysqldump` with the agent's flags `> /dev/null`"}
	tee := &series{Key: "dump-tee", Label: "the same through `stash-agent dump-tee` (the manifest, built in the same pass) `> /dev/null`"}
	teeArgv := append([]string{filepath.Join(b.binDir, "stash-agent"), "dump-tee", "--"}, b.dumpArgv()...)
	stash := &series{Key: "stash", Label: "Stash's pipeline `mysqldump | restic backup --stdin` (new repository)"}
	local := &series{Key: "ours-local", Label: "ours: `kubectl stash trigger --wait`, local repository (new)"}
	s3 := &series{Key: "ours-s3", Label: "ours: `kubectl stash trigger --wait`, S3 repository (new)"}
	plainArgv := []string{b.db.Dump, "--defaults-extra-file=" + b.src.OptionFile(), "--single-transaction", "--all-databases"}

	done := b.step("a, b, c: raw mysqldump, Stash's pipeline, ours to local and S3 (new repositories), in turns")
	if err := quiesce(ctx, b.src); err != nil {
		return err
	}
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
		dt, err := b.timeDump(ctx, teeArgv)
		if err != nil {
			return err
		}
		tee.add(dt)
		b.logf("   a: %s plain, %s with the agent's flags, %s through dump-tee", plain.Samples[i].Round(time.Millisecond), d.Round(time.Millisecond), dt.Round(time.Millisecond))

		pipeline := func() error {
			d, sum, peak, err := b.stashPipeline(ctx, b.localRepo("stash-pipeline"))
			if err != nil {
				return err
			}
			stash.add(d)
			res.Data.DumpBytes = int64(sum.TotalBytesProcessed)
			res.ResticStashPeak = max(res.ResticStashPeak, peak)
			b.logf("   b: %s, %s dump, %s stored", d.Round(time.Millisecond), humanBytes(int64(sum.TotalBytesProcessed)), humanBytes(int64(sum.DataAddedPacked)))
			return nil
		}
		oursBackups := func() error {
			for _, c := range []struct {
				s      *series
				config string
				repo   repoLoc
			}{{local, cfgLocal, b.localRepo(repoLocal)}, {s3, cfgS3, b.s3Repo(s3Prefix)}} {
				if err := b.freshRepo(ctx, c.repo); err != nil {
					return err
				}
				r, err := b.trigger(ctx, c.config)
				if err != nil {
					return err
				}
				c.s.add(r.d)
				b.noteWatch("c", r)
			}
			return nil
		}
		// b and c swap places every round: neither always follows the other.
		order := []func() error{pipeline, oursBackups}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, f := range order {
			if err := f(); err != nil {
				return err
			}
		}
	}
	for _, s := range []*series{plain, agentFlags, tee, stash, local, s3} {
		s.Bytes = res.Data.DumpBytes
	}
	snap, err := b.snapshot(ctx, b.localRepo(repoLocal), "latest")
	if err != nil {
		return err
	}
	res.Data.StoredFull = int64(snap.Summary.DataAddedPacked)
	res.Backup = append(res.Backup, plain, agentFlags, tee, stash, local, s3)
	done()

	done = b.step("d. ours: a second backup, nothing changed")
	same := &series{Key: "ours-unchanged", Label: "ours: second backup, nothing changed (local)", Bytes: res.Data.DumpBytes}
	for i := 0; i < runs; i++ {
		r, err := b.trigger(ctx, cfgLocal)
		if err != nil {
			return err
		}
		same.add(r.d)
		b.noteWatch("d", r)
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
		if err := quiesce(ctx, b.src); err != nil {
			return err
		}
		res.Data.Changed = n
		r, err := b.trigger(ctx, cfgLocal)
		if err != nil {
			return err
		}
		changed.add(r.d)
		b.noteWatch("e", r)
		snap, err := b.snapshot(ctx, b.localRepo(repoLocal), r.snapshot)
		if err != nil {
			return err
		}
		res.AddedChanged = append(res.AddedChanged, int64(snap.Summary.DataAddedPacked))
		b.logf("   e: %d rows changed, %s stored", n, humanBytes(int64(snap.Summary.DataAddedPacked)))
	}
	res.Backup = append(res.Backup, changed)
	done()
	return nil
}

// noteWatch keeps the peaks and the start/finish breakdown of one backup.
func (b *bench) noteWatch(fig string, r oursRun) {
	res := b.res
	w := r.watch
	res.AgentBackupRSS = max(res.AgentBackupRSS, w.AgentPeakRSS)
	res.AgentBackupHWM = max(res.AgentBackupHWM, w.AgentHWM)
	res.ResticAgentPeak = max(res.ResticAgentPeak, w.ResticPeak)
	if len(w.DumpStarts) > 0 {
		res.StartLatency = append(res.StartLatency, w.DumpStarts[0].Sub(r.started))
		res.FinishLatency = append(res.FinishLatency, r.started.Add(r.d).Sub(w.DumpEnd))
	}
	b.logf("   %s: %s (session %s; agent RSS peak %s, restic peak %s)", fig, r.d.Round(time.Millisecond), r.session,
		humanBytes(w.AgentPeakRSS<<10), humanBytes(w.ResticPeak<<10))
}

// measureRestores measures f and g on the latest snapshot of the local
// repository, in turns, each into the emptied and quiesced target.
func (b *bench) measureRestores(ctx context.Context) error {
	runs := b.cfg.Runs
	res := b.res
	loc := b.localRepo(repoLocal)
	snap, err := b.snapshot(ctx, loc, "latest")
	if err != nil {
		return err
	}
	done := b.step("f, g: raw restore (mariadb < dump.sql) and ours (kubectl stash restore --wait), in turns")
	defer done()
	path := filepath.Join(b.work, "dump.sql")
	size, err := b.writeDumpFile(ctx, loc, snap, path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	raw := &series{Key: "raw-restore", Label: "`mariadb < dump.sql` (the agent's client flags), empty target", Bytes: size}
	ours := &series{Key: "ours-restore", Label: "ours: `kubectl stash restore --wait`, local repository, empty target", Bytes: size}
	agent := b.agents[abDst]
	rawRun := func() error {
		d, err := b.rawRestore(ctx, path)
		if err != nil {
			return err
		}
		raw.add(d)
		b.logf("   f: %s", d.Round(time.Millisecond))
		return nil
	}
	oursRun := func() error {
		if err := b.prepareTarget(ctx); err != nil {
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
		b.logf("   g: %s (agent RSS peak %s)", d.Round(time.Millisecond), humanBytes(w.AgentPeakRSS<<10))
		// The restore really happened: the target holds the source's rows.
		if err := verifyRows(ctx, b.dst, res.Data); err != nil {
			return fmt.Errorf("after kubectl stash restore: %w", err)
		}
		return nil
	}
	for i := 0; i < runs; i++ {
		order := []func() error{rawRun, oursRun}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, f := range order {
			if err := f(); err != nil {
				return err
			}
		}
	}
	res.Restore = append(res.Restore, raw, ours)
	return b.measureVerify(ctx, snap.ID, size)
}

// measureVerify verifies the restored snapshot with the source's agent,
// into its scratch server: the whole verification, and its restore (the
// RTO it reports), against the restores above.
func (b *bench) measureVerify(ctx context.Context, snapshot string, size int64) error {
	done := b.step("h: ours: kubectl stash verify --wait (restore into a scratch server, dump it, compare)")
	defer done()
	total := &series{Key: "ours-verify", Label: "ours: `kubectl stash verify --wait` (restore into a scratch server in the agent, dump it again, compare)", Bytes: size}
	rto := &series{Key: "ours-verify-restore", Label: "ours: the verification's restore into its scratch server (the RTO it reports)", Bytes: size}
	for range b.cfg.Runs {
		out, d, err := b.kubectl(ctx, sessionTO+time.Minute, "stash", "-n", ns, "verify", cfgLocal, "--snapshot", snapshot, "--wait", "--timeout", sessionTOs)
		if err != nil {
			return fmt.Errorf("kubectl stash verify: %w (agent log %s)", err, b.agents[abSrc].LogPath)
		}
		vs, err := b.stash.VerificationSessions(ns).Get(ctx, createdName(out, "verificationsession.stash.appscode.com/"))
		if err != nil {
			return err
		}
		r, err := time.ParseDuration(vs.Status.RestoreDuration)
		if err != nil || vs.Status.Phase != stashv1beta1.VerificationSucceeded || vs.Status.TablesChecked == 0 {
			return fmt.Errorf("VerificationSession %s: %s, %d tables, restore %q: %s", vs.Name, vs.Status.Phase, vs.Status.TablesChecked, vs.Status.RestoreDuration, vs.Status.Message)
		}
		total.add(d)
		rto.add(r)
		b.logf("   h: %s, of which the restore %s, %d tables", d.Round(time.Millisecond), r, vs.Status.TablesChecked)
	}
	b.res.Restore = append(b.res.Restore, total, rto)
	return nil
}
