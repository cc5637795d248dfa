package main

import "time"

// results is everything one run measured.
type results struct {
	Machine  machineInfo
	Versions versionInfo
	Data     dataInfo
	Started  time.Time
	Elapsed  time.Duration

	Backup  []*series // a-e
	Restore []*series // f, g
	// Added is the bytes stored by each "1% changed" and "unchanged" backup.
	AddedChanged   []int64
	AddedUnchanged []int64

	// Breakdown of ours (local): trigger to dump start, dump end to exit.
	StartLatency  []time.Duration
	FinishLatency []time.Duration

	AgentBackupRSS   int64 // KiB, largest VmRSS sampled during the measured backups
	AgentBackupHWM   int64 // KiB, VmHWM after them
	ResticAgentPeak  int64 // KiB, the agent's restic
	ResticStashPeak  int64 // KiB, restic in Stash's pipeline
	AgentRestoreRSS  int64 // KiB, the target's agent during the measured restores
	IdleRSS          int64 // KiB, largest VmRSS sampled while idle
	IdleRSSMean      int64
	IdleCPU          float64 // percent of one core
	IdleWindow       time.Duration
	SlotToDump       []time.Duration
	StatusLatency    *series
	PluginStartup    *series
	StatusConfigs    int
	Compression      []tuneResult
	PackSize         []tuneResult
	ReadAhead        []*series
	RestoreCheckRows int64

	// The many-objects phase, one step per size.
	Many        []manyStep
	ManyStarted time.Time
	ManyElapsed time.Duration

	PITR *pitrResult
	Load *loadScale
}

// tuneResult is one restic setting: time and repository size.
type tuneResult struct {
	Setting string
	Time    *series
	Size    int64 // bytes in the repository after one backup
}

func (r *results) find(key string) *series {
	for _, list := range [][]*series{r.Backup, r.Restore, r.ReadAhead} {
		for _, s := range list {
			if s.Key == key {
				return s
			}
		}
	}
	return nil
}
