// Package schedule runs one gocron job per BackupConfiguration and names
// each slot deterministically, so a restart or a second replica never makes
// two BackupSessions for one slot.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/robfig/cron/v3"
)

// ErrBadSchedule marks a schedule that cannot be parsed.
var ErrBadSchedule = errors.New("invalid schedule")

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Spec is a parsed schedule.
type Spec struct {
	Expr  string
	Every time.Duration // set for "@every D"
	cron  cron.Schedule
}

// Parse accepts 5-field cron, descriptors (@hourly, @daily, ...), "@every D"
// (D at least 1s) and a CRON_TZ=Zone or TZ=Zone prefix.
func Parse(expr string) (Spec, error) {
	e := strings.TrimSpace(expr)
	if e == "" {
		return Spec{}, fmt.Errorf("%w: empty", ErrBadSchedule)
	}
	if rest, ok := strings.CutPrefix(e, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < time.Second {
			return Spec{}, fmt.Errorf("%w %q: @every needs a duration of at least 1s, like @every 30s", ErrBadSchedule, expr)
		}
		return Spec{Expr: e, Every: d}, nil
	}
	s, err := safeParse(e)
	if err != nil {
		return Spec{}, fmt.Errorf("%w %q: %v (use 5 fields, like \"0 2 * * *\", or @hourly, @every 30s)", ErrBadSchedule, expr, err)
	}
	return Spec{Expr: e, cron: s}, nil
}

// safeParse guards against panics in the cron parser on malformed input
// (found by FuzzParse: "TZ=" with nothing after it), so a user's schedule
// string can never crash the agent.
func safeParse(e string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed expression")
		}
	}()
	return parser.Parse(e)
}

// Next is the first slot after t.
func (s Spec) Next(t time.Time) time.Time {
	if s.Every > 0 {
		return t.Truncate(s.Every).Add(s.Every)
	}
	return s.cron.Next(t)
}

// Prev is the newest slot at or before now and after since, if any. Cron
// schedules are searched forward from widening windows, so a minutely
// schedule costs at most a day of steps and a yearly one a few.
func (s Spec) Prev(now, since time.Time) (time.Time, bool) {
	if !now.After(since) {
		return time.Time{}, false
	}
	if s.Every > 0 {
		p := now.Truncate(s.Every)
		return p, p.After(since)
	}
	for _, w := range []time.Duration{time.Hour, 25 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		from := now.Add(-w)
		if from.Before(since) {
			from = since
		}
		var last time.Time
		for t, i := from, 0; i < 50000; i++ {
			n := s.cron.Next(t)
			if n.IsZero() || n.After(now) {
				break
			}
			last, t = n, n
		}
		if !last.IsZero() {
			return last, true
		}
		if !from.After(since) {
			break
		}
	}
	return time.Time{}, false
}

// Slot maps a firing time to its slot: fires are aligned, so rounding to
// the schedule's granularity absorbs scheduling latency.
func (s Spec) Slot(fired time.Time) time.Time {
	if s.Every > 0 {
		return fired.Round(s.Every)
	}
	return fired.Truncate(time.Minute)
}

// SessionName is the BackupSession name for a config's slot.
func SessionName(config string, slot time.Time) string {
	suffix := "-" + strconv.FormatInt(slot.Unix(), 10)
	max := 63 - len(suffix)
	if len(config) > max {
		config = strings.TrimRight(config[:max], "-.")
	}
	return config + suffix
}

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
	spec Spec
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
func (sc *Scheduler) Set(config, expr string) (Spec, error) {
	spec, err := Parse(expr)
	if err != nil {
		sc.Remove(config)
		return Spec{}, err
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
		return Spec{}, fmt.Errorf("%w %q: %v", ErrBadSchedule, expr, err)
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
