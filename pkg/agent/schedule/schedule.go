// Package schedule runs one gocron job per BackupConfiguration. Parsing a
// schedule and naming its slots is the plugin's business too, so those live
// in pkg/contract/schedule and pkg/contract.
package schedule

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
)

// FireFunc is called at each slot.
type FireFunc func(ctx context.Context, config string, slot time.Time)

// Scheduler keeps one job per config.
type Scheduler struct {
	mu    sync.Mutex
	s     gocron.Scheduler
	jobs  map[string]entry
	fire  FireFunc
	clock func() time.Time
	ctx   context.Context
}

type entry struct {
	expr string
	id   string
	spec schedule.Spec
}

// New starts a scheduler; Stop ends it.
func New(ctx context.Context, fire FireFunc, clock func() time.Time) (*Scheduler, error) {
	s, err := gocron.NewScheduler()
	if err != nil {
		return nil, err
	}
	s.Start()
	if clock == nil {
		clock = time.Now
	}
	return &Scheduler{s: s, jobs: map[string]entry{}, fire: fire, clock: clock, ctx: ctx}, nil
}

// Set (re)schedules a config; an unchanged expression is left alone.
func (sc *Scheduler) Set(config, expr string) (schedule.Spec, error) {
	spec, err := schedule.Parse(expr)
	if err != nil {
		sc.Remove(config)
		return schedule.Spec{}, err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if e, ok := sc.jobs[config]; ok {
		if e.expr == expr {
			return spec, nil
		}
		sc.s.RemoveByTags(config)
		delete(sc.jobs, config)
	}
	var def gocron.JobDefinition
	opts := []gocron.JobOption{gocron.WithTags(config), gocron.WithSingletonMode(gocron.LimitModeReschedule)}
	if spec.Every > 0 {
		def = gocron.DurationJob(spec.Every)
		// Align to multiples of the interval, so every replica agrees on
		// slots. "Past" accepts a start that passed while the job was being
		// added; gocron then steps on to the next aligned slot.
		opts = append(opts, gocron.WithStartAt(gocron.WithStartDateTimePast(spec.Next(sc.clock()))))
	} else {
		def = gocron.CronJob(expr, false)
	}
	task := gocron.NewTask(func() {
		sc.fire(sc.ctx, config, spec.Slot(sc.clock()))
	})
	j, err := sc.s.NewJob(def, task, opts...)
	if err != nil {
		return schedule.Spec{}, fmt.Errorf("%w %q: %w", schedule.ErrBadSchedule, expr, err)
	}
	sc.jobs[config] = entry{expr: expr, id: j.ID().String(), spec: spec}
	return spec, nil
}

// Remove unschedules a config (paused, deleted, or no schedule).
func (sc *Scheduler) Remove(config string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if _, ok := sc.jobs[config]; ok {
		sc.s.RemoveByTags(config)
		delete(sc.jobs, config)
	}
}

// NextRun is the next slot of a config, if scheduled.
func (sc *Scheduler) NextRun(config string) (time.Time, bool) {
	sc.mu.Lock()
	e, ok := sc.jobs[config]
	sc.mu.Unlock()
	if !ok {
		return time.Time{}, false
	}
	return e.spec.Next(sc.clock()), true
}

// Stop stops every job.
func (sc *Scheduler) Stop() error { return sc.s.Shutdown() }
