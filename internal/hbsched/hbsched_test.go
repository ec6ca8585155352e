package hbsched

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name         string
		period, grid time.Duration
		// wantPhases lists every phase New may pick; nil: any in [0, period).
		wantPhases []time.Duration
	}{
		{name: "no grid", period: time.Second},
		{name: "negative grid", period: time.Second, grid: -time.Millisecond},
		{name: "four steps", period: 4 * time.Second, grid: time.Second,
			wantPhases: []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second}},
		{name: "grid of the period: one step", period: time.Second, grid: time.Second, wantPhases: []time.Duration{0}},
		{name: "grid longer than the period: one step", period: time.Second, grid: time.Minute, wantPhases: []time.Duration{0}},
		{name: "period not a multiple of the grid", period: 250 * time.Millisecond, grid: 100 * time.Millisecond,
			wantPhases: []time.Duration{0, 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				s := New(tc.period, tc.grid)
				if s.Period != tc.period || s.Phase < 0 || s.Phase >= tc.period {
					t.Fatalf("New(%v, %v) = %+v, want period %v and a phase in [0, %v)", tc.period, tc.grid, s, tc.period, tc.period)
				}
				seen[s.Phase] = true
			}
			if tc.wantPhases == nil {
				if len(seen) < 150 {
					t.Errorf("New(%v, %v) picked %d phases in 200 draws, want any (about 200)", tc.period, tc.grid, len(seen))
				}
				return
			}
			// 200 draws over at most 4 steps: every step is picked.
			for _, p := range tc.wantPhases {
				if !seen[p] {
					t.Errorf("New(%v, %v) never picked phase %v", tc.period, tc.grid, p)
				}
				delete(seen, p)
			}
			if len(seen) > 0 {
				t.Errorf("New(%v, %v) picked phases %v, want only %v", tc.period, tc.grid, seen, tc.wantPhases)
			}
		})
	}
}

// at is a wall-clock time sinceEpoch after a whole multiple of 10s.
func at(sinceEpoch time.Duration) time.Time {
	return time.Unix(0, int64(1_700_000_000*time.Second+sinceEpoch))
}

func TestScheduleUntil(t *testing.T) {
	s := Schedule{Period: 10 * time.Second, Phase: 3 * time.Second}
	for _, tc := range []struct {
		name string
		now  time.Time
		want time.Duration
	}{
		{name: "before the phase", now: at(0), want: 3 * time.Second},
		{name: "just before it", now: at(3*time.Second - time.Millisecond), want: time.Millisecond},
		{name: "at it: the next one", now: at(3 * time.Second), want: 10 * time.Second},
		{name: "a timer late by 5ms keeps the phase", now: at(3*time.Second + 5*time.Millisecond), want: 10*time.Second - 5*time.Millisecond},
		{name: "periods later", now: at(35 * time.Second), want: 8 * time.Second},
		{name: "on a later beat", now: at(43 * time.Second), want: 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Until(tc.now); got != tc.want {
				t.Errorf("Until(%v) = %v, want %v", tc.now.UTC().Format(time.StampMilli), got, tc.want)
			}
		})
	}
}

func TestScheduleNext(t *testing.T) {
	s := Schedule{Period: 10 * time.Second, Phase: 3 * time.Second}
	for _, tc := range []struct {
		name string
		now  time.Time
		want time.Duration
	}{
		{
			name: "sent on the phase",
			now:  at(3 * time.Second),
			want: 10 * time.Second,
		},
		{
			name: "sent 5ms late",
			now:  at(3*time.Second + 5*time.Millisecond),
			want: 10*time.Second - 5*time.Millisecond,
		},
		{
			name: "sent 5ms early (a slewed wall clock): the next period, not 5ms later",
			now:  at(3*time.Second - 5*time.Millisecond),
			want: 10*time.Second + 5*time.Millisecond,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Next(tc.now); got != tc.want {
				t.Errorf("Next(%v) = %v, want %v", tc.now.UTC().Format(time.StampMilli), got, tc.want)
			}
		})
	}
}
