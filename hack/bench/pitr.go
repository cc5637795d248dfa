package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// phasePITR is the name of the point-in-time recovery phase for -only.
const phasePITR = "pitr"

const (
	abPITR       = "pitrsrc"
	cfgPITR      = "pitr"      // --pitr, to pitr-repo
	cfgPITRFull  = "pitr-full" // the alternative: full backups, to pitr-full-repo
	repoPITR     = "pitr-repo"
	repoPITRFull = "pitr-full-repo"
)

// pitrResult is what the point-in-time phase measured.
type pitrResult struct {
	Started  time.Time
	Elapsed  time.Duration
	Data     dataInfo
	Rate     int           // transactions per second of the steady load
	Window   time.Duration // of the steady load
	Interval time.Duration
	// The recovery point: how far behind the server the archive was,
	// sampled every second under the load.
	LagMax, LagMean time.Duration
	LagSamples      int
	// The alternative's best recovery point: full backups back to back,
	// each as long as one full backup.
	FullBackup time.Duration
	// Cost of archiving under the load, in % of one core, and KiB.
	AgentCPU, ResticCPU, StreamCPU  float64
	AgentRSS, StreamRSS, ResticPeak int64
	// A "day": Rounds rounds of 1% of the rows changed.
	Rounds                   int
	Changed                  int64 // rows per round
	BinlogGrowth, DumpGrowth int64 // bytes the repositories grew over the rounds
	// Replay.
	ReplayTx                   int
	BaseRestore, LatestRestore time.Duration
}

// measurePITR runs a steady write load on a server with a binlog whose
// config has --pitr, and measures the archive's recovery point and cost,
// the repository growth of a "day" of 1% changes against full dumps, and
// the replay's throughput.
func (b *bench) measurePITR(ctx context.Context) error {
	cfg := b.cfg
	defer b.step(fmt.Sprintf("point-in-time recovery: %d tables x %d rows, %d tx/s for %s, --pitr-interval %s, %d rounds of 1%%",
		cfg.PITRTables, cfg.PITRRows, cfg.PITRRate, cfg.PITRWindow, cfg.PITRInterval, cfg.PITRRounds))()
	r := &pitrResult{Started: time.Now(), Rate: cfg.PITRRate, Window: cfg.PITRWindow, Interval: cfg.PITRInterval, Rounds: cfg.PITRRounds,
		Data: dataInfo{Tables: cfg.PITRTables, RowsPerTable: cfg.PITRRows}}
	b.res.PITR = r
	defer func() { r.Elapsed = time.Since(r.Started) }()

	src, err := b.env.AddMariaDB(ctx, abPITR, testenv.MariaDBOptions{ExtraArgs: []string{"--log-bin=mysql-bin", "--binlog-format=ROW", "--server-id=1"}})
	if err != nil {
		return err
	}
	// Its dump carries its users into the target: the target's password.
	if _, err := src.Exec(ctx, fmt.Sprintf("ALTER USER '%s'@'%%' IDENTIFIED BY '%s';", src.User, b.dst.Password)); err != nil {
		return err
	}
	src.Password = b.dst.Password
	if err := src.RewriteOptionFile(); err != nil {
		return err
	}
	if err := generate(ctx, src, &r.Data); err != nil {
		return err
	}
	if err := b.createSecret(ctx, ns, abPITR+"-auth", map[string]string{"username": src.User, "password": src.Password}); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"create", "repository", repoPITR, "--backend", "local", "--path", b.localRepo(repoPITR).Dir, "--secret", "repo-creds"},
		{"create", "repository", repoPITRFull, "--backend", "local", "--path", b.localRepo(repoPITRFull).Dir, "--secret", "repo-creds"},
		{"create", "appbinding", abPITR, "--url", "tcp(" + src.Addr() + ")/", "--secret", abPITR + "-auth", "--type", "mariadb", "--version", "10.11"},
		{"create", "backupconfig", cfgPITR, "--target", "appbinding/" + abPITR, "--repository", repoPITR, "--pitr", "--pitr-interval", cfg.PITRInterval.String()},
		{"create", "backupconfig", cfgPITRFull, "--target", "appbinding/" + abPITR, "--repository", repoPITRFull},
	} {
		if _, _, err := b.kubectl(ctx, kubeTO, append([]string{"stash", "-n", ns}, args...)...); err != nil {
			return err
		}
	}
	if err := b.startAgent(ctx, abPITR); err != nil {
		return err
	}
	if _, _, err := b.kubectl(ctx, sessionTO, "stash", "-n", ns, "trigger", cfgPITR, "--wait", "--timeout", sessionTOs); err != nil {
		return fmt.Errorf("the base backup: %w", err)
	}
	base, err := b.waitWindow(ctx, time.Time{})
	if err != nil {
		return err
	}
	b.logf("   archive open: window from %s", base.UTC().Format(time.RFC3339))

	// 1. The recovery point and the cost, under a steady load.
	agent := b.agents[abPITR]
	stopWatch := procWatch{agentPid: agent.Pid(), every: 100 * time.Millisecond}.start()
	a0, c0, _ := procCPU(agent.Pid())
	stream := streamPid(agent.Pid())
	s0, _ := procSelfCPU(stream)
	load, err := startLoad(ctx, src, r.Data, cfg.PITRRate)
	if err != nil {
		return err
	}
	start := time.Now()
	var lags []time.Duration
	for time.Since(start) < cfg.PITRWindow {
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
		if until := b.recoverableUntil(ctx); !until.IsZero() {
			lags = append(lags, time.Since(until))
		}
		if rss, err := procStatusKiB(stream, "VmRSS"); err == nil {
			r.StreamRSS = max(r.StreamRSS, rss)
		}
	}
	win := time.Since(start)
	if err := load.end(); err != nil {
		return fmt.Errorf("the write load: %w", err)
	}
	w := stopWatch()
	a1, c1, _ := procCPU(agent.Pid())
	s1, _ := procSelfCPU(stream)
	r.AgentCPU = float64(a1-a0) / clockTicks / win.Seconds() * 100
	r.ResticCPU = float64(c1-c0) / clockTicks / win.Seconds() * 100
	r.StreamCPU = float64(s1-s0) / clockTicks / win.Seconds() * 100
	r.AgentRSS, r.ResticPeak = w.AgentPeakRSS, w.ResticPeak
	var sum time.Duration
	for _, l := range lags {
		sum += l
		r.LagMax = max(r.LagMax, l)
	}
	if len(lags) > 0 {
		r.LagMean = sum / time.Duration(len(lags))
	}
	r.LagSamples = len(lags)
	b.logf("   under %d tx/s for %s: lag mean %s, max %s; CPU agent %.1f%%, restic %.1f%%, mariadb-binlog %.1f%%", cfg.PITRRate, win.Round(time.Second),
		r.LagMean.Round(100*time.Millisecond), r.LagMax.Round(100*time.Millisecond), r.AgentCPU, r.ResticCPU, r.StreamCPU)

	// 2. The alternative's recovery point: one full backup's length.
	_, d, err := b.kubectl(ctx, sessionTO, "stash", "-n", ns, "trigger", cfgPITRFull, "--wait", "--timeout", sessionTOs)
	if err != nil {
		return err
	}
	r.FullBackup = d

	// 3. A "day" of 1% changes: the binlog archive against a full dump each round.
	pitrBefore, err := dirSize(b.localRepo(repoPITR).Dir)
	if err != nil {
		return err
	}
	fullBefore, err := dirSize(b.localRepo(repoPITRFull).Dir)
	if err != nil {
		return err
	}
	for i := range cfg.PITRRounds {
		n, err := changeOnePercent(ctx, src, r.Data, i)
		if err != nil {
			return err
		}
		r.Changed = n
		if _, _, err := b.kubectl(ctx, sessionTO, "stash", "-n", ns, "trigger", cfgPITRFull, "--wait", "--timeout", sessionTOs); err != nil {
			return err
		}
	}
	// The archive commits on its own clock: once, at the end, it has all.
	if _, err := b.waitWindow(ctx, time.Now().Add(time.Second)); err != nil {
		return err
	}
	pitrAfter, _ := dirSize(b.localRepo(repoPITR).Dir)
	fullAfter, _ := dirSize(b.localRepo(repoPITRFull).Dir)
	r.BinlogGrowth, r.DumpGrowth = pitrAfter-pitrBefore, fullAfter-fullBefore
	b.logf("   %d rounds of 1%% (%d rows each): binlog archive +%s, full dumps +%s", cfg.PITRRounds, r.Changed, humanBytes(r.BinlogGrowth), humanBytes(r.DumpGrowth))

	// 4. The replay: latest against the base alone, into the emptied target.
	snap, err := b.latestDump(ctx, b.localRepo(repoPITR))
	if err != nil {
		return err
	}
	if err := b.prepareTarget(ctx); err != nil {
		return err
	}
	if _, r.BaseRestore, err = b.kubectl(ctx, sessionTO, "stash", "-n", ns, "restore", "--repository", repoPITR, "--target", "appbinding/"+abDst,
		"--snapshot", snap.ID, "--wait", "--timeout", sessionTOs); err != nil {
		return err
	}
	if err := b.prepareTarget(ctx); err != nil {
		return err
	}
	out, d, err := b.kubectl(ctx, sessionTO, "stash", "-n", ns, "restore", "--repository", repoPITR, "--target", "appbinding/"+abDst,
		"--at", "latest", "--wait", "--timeout", sessionTOs)
	if err != nil {
		return err
	}
	r.LatestRestore = d
	rs, err := b.stash.RestoreSessions(ns).Get(ctx, createdName(out, "restoresession.stash.appscode.com/"))
	if err != nil {
		return err
	}
	if rs.Status.Phase != stashv1beta1.RestoreSucceeded || rs.Status.PointInTime == nil {
		return fmt.Errorf("restore --at latest: %s: %s", rs.Status.Phase, rs.Status.Message)
	}
	r.ReplayTx = rs.Status.PointInTime.Transactions
	// The replayed target equals the source.
	q := "SELECT SUM(k), COUNT(*) FROM `" + benchDB + "`.`sbtest1`"
	want, err := src.Exec(ctx, q)
	if err != nil {
		return err
	}
	got, err := b.dst.Exec(ctx, q)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("after restore --at latest the target's sbtest1 is %q, the source's %q", strings.TrimSpace(got), strings.TrimSpace(want))
	}
	b.logf("   replay: %d transactions; restore of the base %s, --at latest %s", r.ReplayTx, r.BaseRestore.Round(time.Millisecond), r.LatestRestore.Round(time.Millisecond))
	return emptyTarget(ctx, b.dst)
}

// latestDump is the newest dump snapshot (not an archived binlog file).
func (b *bench) latestDump(ctx context.Context, l repoLoc) (restic.Snapshot, error) {
	snaps, err := b.resticRepo(l).Snapshots(ctx, contract.BackupHost, nil)
	if err != nil {
		return restic.Snapshot{}, err
	}
	if len(snaps) == 0 {
		return restic.Snapshot{}, fmt.Errorf("no dump in %s", l.URL)
	}
	newest := snaps[0]
	for _, s := range snaps {
		if s.Time.After(newest.Time) {
			newest = s
		}
	}
	return newest, nil
}

// waitWindow waits until the archive is complete up to after (zero: until
// the window opens) and returns the window's first time.
func (b *bench) waitWindow(ctx context.Context, after time.Time) (time.Time, error) {
	deadline := time.Now().Add(5*time.Minute + 3*b.cfg.PITRInterval)
	for time.Now().Before(deadline) {
		bc, err := b.stash.BackupConfigurations(ns).Get(ctx, cfgPITR)
		if err == nil && bc.Status.PointInTimeRecovery != nil {
			ps := bc.Status.PointInTimeRecovery
			if ps.FirstRecoverableTime != nil && ps.LastRecoverableTime != nil && ps.LastRecoverableTime.After(after) {
				return ps.FirstRecoverableTime.Time, nil
			}
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, fmt.Errorf("the binlog archive did not reach %s (agent log %s)", after.Format(time.RFC3339), b.agents[abPITR].LogPath)
}

func (b *bench) recoverableUntil(ctx context.Context) time.Time {
	bc, err := b.stash.BackupConfigurations(ns).Get(ctx, cfgPITR)
	if err != nil || bc.Status.PointInTimeRecovery == nil || bc.Status.PointInTimeRecovery.LastRecoverableTime == nil {
		return time.Time{}
	}
	return bc.Status.PointInTimeRecovery.LastRecoverableTime.Time
}

// streamPid is the agent's mariadb-binlog, 0 if none.
func streamPid(agent int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, err := procStat(pid); err == nil && ppid == agent {
			if argv := procArgv(pid); len(argv) > 0 && strings.Contains(filepath.Base(argv[0]), "binlog") {
				return pid
			}
		}
	}
	return 0
}

func procSelfCPU(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	s, _, err := procCPU(pid)
	return s, err
}

// load is a steady stream of one-row updates over one session.
type load struct {
	stop chan struct{}
	done chan error
}

func startLoad(ctx context.Context, db *testenv.MariaDB, d dataInfo, rate int) (*load, error) {
	cmd := exec.CommandContext(ctx, "mariadb", "--defaults-extra-file="+db.OptionFile(), "--batch")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l := &load{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var err error
	loop:
		for {
			select {
			case <-l.stop:
				break loop
			case <-tick.C:
				stmt := fmt.Sprintf("UPDATE `%s`.`sbtest%d` SET k = k + 1 WHERE id = %d;\n", benchDB, 1+rand.IntN(d.Tables), 1+rand.Int64N(d.RowsPerTable))
				if _, err = io.WriteString(in, stmt); err != nil {
					break loop
				}
			}
		}
		in.Close()
		if werr := cmd.Wait(); err == nil && werr != nil {
			err = fmt.Errorf("%w: %s", werr, stderr.String())
		}
		l.done <- err
	}()
	return l, nil
}

func (l *load) end() error {
	close(l.stop)
	return <-l.done
}

// Markers of the point-in-time section: -only pitr rewrites what is between them.
const (
	pitrBegin = "<!-- section:pitr:begin: written by make bench; `make bench BENCH_ARGS=-only=pitr` rewrites this section alone -->"
	pitrEnd   = "<!-- section:pitr:end -->"
)

// pitrSection renders the point-in-time section, markers included.
func pitrSection(cfg config, res *results) string {
	r := res.PITR
	var w strings.Builder
	md := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	md("%s", pitrBegin)
	md("## Point-in-time recovery")
	md("")
	md("Mode **%s**, measured on %s in %s, kubectl-stash commit %s. A MariaDB server with a row-based binlog holds %d sysbench-shaped tables of %d rows; "+
		"its config archives the binlog (`--pitr --pitr-interval %s`) into a local repository, and a second config makes full backups of the same data into another.",
		cfg.Mode, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Elapsed.Round(time.Second), res.Versions.Commit, r.Data.Tables, r.Data.RowsPerTable, r.Interval)
	md("")
	md("| | binlog archive (ours) | the alternative | ratio |")
	md("|---|---|---|---|")
	perDump := r.DumpGrowth / int64(max(r.Rounds, 1))
	md("| recovery point under %d one-row transactions/s (how far the repository is behind the server, sampled each second for %s) | mean %s, max %s | full backups: the schedule's period, at best one backup's length back to back, %s, each adding %s to the repository | %.2fx (max / one backup) |",
		r.Rate, r.Window.Round(time.Second), secs(r.LagMean), secs(r.LagMax), secs(r.FullBackup), humanBytes(perDump), ratio(r.LagMax, r.FullBackup))
	md("| repository growth over %d rounds of 1%% of the rows changed (%d rows each), a backup or a commit after each | %s | a full dump after each round: %s | %.3fx |",
		r.Rounds, r.Changed, humanBytes(r.BinlogGrowth), humanBytes(r.DumpGrowth), float64(r.BinlogGrowth)/float64(max(r.DumpGrowth, 1)))
	replay := r.LatestRestore - r.BaseRestore
	tps := 0.0
	if replay > 0 {
		tps = float64(r.ReplayTx) / replay.Seconds()
	}
	md("| restore of the newest state: the base, then the replay of %d transactions | %s (%.0f transactions/s in the replay) | the base alone: %s | %.2fx |",
		r.ReplayTx, secs(r.LatestRestore), tps, secs(r.BaseRestore), ratio(r.LatestRestore, r.BaseRestore))
	md("")
	md("While archiving under the load: the agent %.1f%% of one core and RSS %s at most; its restic runs %.1f%% of a core together, each at most %s; mariadb-binlog %.1f%% and %s.",
		r.AgentCPU, mib(r.AgentRSS), r.ResticCPU, mib(r.ResticPeak), r.StreamCPU, mib(r.StreamRSS))
	md("The recovery point is what a loss of the server, the agent and its pod together would cost; when only the database dies, the agent commits what it had received (`TestPITRRecoveryPoint` lost 0 transactions). " +
		"The replay's rate is the difference between the two restores' wall times, over the transactions replayed. Growth is the repositories' directories on disk.")
	md("%s", pitrEnd)
	return w.String()
}
