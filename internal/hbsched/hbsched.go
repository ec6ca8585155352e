// Package hbsched is the arithmetic of heartbeat schedules on the wall
// clock, shared by the worker agent and the benchmark's fleet.
//
// Heartbeats from many workers at random times cost the hub one wake-up
// each: an idle Go runtime woken from sleep for one frame. When each worker
// picks its phase among the multiples of a grid step (the hub's
// Registered.heartbeat_grid) and keeps it on the wall clock, a fleet's
// heartbeats still spread over the whole interval, but those of one step
// arrive together, and the hub takes them with one wake-up
// (docs/design/heartbeat-grid.md). That needs the workers' clocks in step (NTP); without it the
// phases are as random as before, which costs the hub only the wake-ups.
package hbsched

import (
	"math/rand/v2"
	"time"
)

// Schedule is when a worker's heartbeats are due: at the wall-clock (Unix)
// times t with t mod Period == Phase. Kept on the wall clock, not from the
// previous beat, a late timer or an extra beat does not move it.
type Schedule struct {
	Period time.Duration // > 0
	Phase  time.Duration // in [0, Period)
}

// New returns a schedule of the period (> 0) at a random phase: a multiple
// of grid below the period (0 when grid >= period), or any phase when grid
// <= 0.
func New(period, grid time.Duration) Schedule {
	if grid <= 0 {
		return Schedule{Period: period, Phase: time.Duration(rand.Int64N(int64(period)))}
	}
	steps := max(int64(period/grid), 1)
	return Schedule{Period: period, Phase: time.Duration(rand.Int64N(steps)) * grid}
}

// Until returns how long from now the next beat is due: more than zero, at
// most one period.
func (s Schedule) Until(now time.Time) time.Duration {
	d := (s.Phase - time.Duration(now.UnixNano())%s.Period) % s.Period
	if d <= 0 {
		d += s.Period
	}
	return d
}

// Next returns how long from now the beat after the one just sent is due:
// the first phase at least half a period away. Timers run on the monotonic
// clock and phases on the wall clock, which NTP may slew against it; a
// timer that fires a little before its phase on the wall clock then gets
// the next period's beat, not a second beat a moment later (Until would
// give that).
func (s Schedule) Next(now time.Time) time.Duration {
	half := s.Period / 2
	return half + s.Until(now.Add(half))
}
