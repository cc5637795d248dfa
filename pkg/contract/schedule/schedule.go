// Package schedule is the contract's schedule parsing: which schedules the
// plugin accepts and the agent runs, and how a firing maps to its slot. It
// is apart from pkg/contract so that what needs only names (pkg/render)
// does not link the cron parser.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ErrBadSchedule marks a schedule that cannot be parsed.
var ErrBadSchedule = errors.New("invalid schedule")

// cronFields is the 5-field cron dialect with descriptors that gocron's
// CronJob(expr, false) runs, so what the plugin accepts the agent can run.
const cronFields = cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor

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
		return Spec{}, fmt.Errorf("%w %q: %w (use 5 fields, like \"0 2 * * *\", or @hourly, @every 30s)", ErrBadSchedule, expr, err)
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
	return cron.NewParser(cronFields).Parse(e)
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
