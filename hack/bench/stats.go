package main

import (
	"slices"
	"time"
)

// series is the samples of one timed figure.
type series struct {
	Key     string // stable identifier, used by the ratios and charts
	Label   string // what was measured, for the report
	Samples []time.Duration
	Bytes   int64  // bytes processed by one run (for throughput), 0 if unknown
	Note    string // extra detail for the report
}

func (s *series) add(d time.Duration) { s.Samples = append(s.Samples, d) }

// median is the middle sample (the mean of the two middle ones for an even count).
func (s *series) median() time.Duration { return medianDur(s.Samples) }

func (s *series) min() time.Duration {
	if len(s.Samples) == 0 {
		return 0
	}
	return slices.Min(s.Samples)
}

func (s *series) max() time.Duration {
	if len(s.Samples) == 0 {
		return 0
	}
	return slices.Max(s.Samples)
}

func medianDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	c := slices.Clone(ds)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

func medianInt(vs []int64) int64 {
	if len(vs) == 0 {
		return 0
	}
	c := slices.Clone(vs)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

// mibPerSec is the throughput of bytes in d.
func mibPerSec(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / (1 << 20) / d.Seconds()
}
