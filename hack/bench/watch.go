package main

import (
	"sync"
	"time"
)

// procWatch samples an agent and its descendants (restic, mysqldump,
// mysql) while a session runs: the agent's RSS, restic's peak RSS, and when
// each dump process was first and last seen.
type procWatch struct {
	agentPid int
	every    time.Duration
	// dumpNeedle, when set, must appear in a dump's argv for it to count.
	dumpNeedle string
}

// watchResult is what a procWatch saw. Sizes are in KiB.
type watchResult struct {
	AgentPeakRSS int64 // the largest VmRSS sampled
	AgentHWM     int64 // VmHWM at the end: the peak since the agent started
	ResticPeak   int64 // the largest VmHWM of the agent's restic processes
	DumpStarts   []time.Time
	DumpEnd      time.Time // last sight of a dump process
	Samples      int
}

// start samples until the returned function is called, which returns the result.
func (w procWatch) start() func() watchResult {
	stop := make(chan struct{})
	var res watchResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.loop(stop, &res)
	}()
	return func() watchResult {
		close(stop)
		wg.Wait()
		if hwm, err := procStatusKiB(w.agentPid, "VmHWM"); err == nil {
			res.AgentHWM = hwm
		}
		return res
	}
}

func (w procWatch) loop(stop <-chan struct{}, res *watchResult) {
	scan := newPidScanner()
	tracked := map[int]bool{} // descendants of the agent still running
	dumps := map[int]bool{}   // dump processes already counted
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	for {
		now := time.Now()
		// New descendants: a parent is the agent or tracked. A child may be
		// listed before its parent, so look again while something was added.
		fresh := scan.fresh()
		for pass := 0; pass < 4 && len(fresh) > 0; pass++ {
			var rest []int
			for _, pid := range fresh {
				ppid, _, err := procStat(pid)
				switch {
				case err != nil:
				case ppid == w.agentPid || tracked[ppid]:
					tracked[pid] = true
				default:
					rest = append(rest, pid)
				}
			}
			if len(rest) == len(fresh) {
				break
			}
			fresh = rest
		}
		// argv is read every time: a child seen between fork and exec still
		// shows its parent's.
		for pid := range tracked {
			argv := procArgv(pid)
			if argv == nil {
				// Gone, or an empty cmdline for an instant while it execs.
				if !procExists(pid) {
					delete(tracked, pid)
				}
				continue
			}
			switch {
			case isRestic(argv):
				if hwm, err := procStatusKiB(pid, "VmHWM"); err == nil {
					res.ResticPeak = max(res.ResticPeak, hwm)
				}
			case isDump(argv) && (w.dumpNeedle == "" || argvHas(argv, w.dumpNeedle)):
				if !dumps[pid] {
					dumps[pid] = true
					res.DumpStarts = append(res.DumpStarts, now)
				}
				res.DumpEnd = now
			}
		}
		if rss, err := procStatusKiB(w.agentPid, "VmRSS"); err == nil {
			res.AgentPeakRSS = max(res.AgentPeakRSS, rss)
		}
		res.Samples++
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}
