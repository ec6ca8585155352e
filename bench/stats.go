package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be sorted ascending: the smallest value such that at
// least p% of the samples are <= it. It returns 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// Latency summarises a set of latency samples.
type Latency struct {
	N                         int
	Mean, P50, P90, P99, P999 time.Duration
	Max                       time.Duration
}

// Summarize sorts a copy of samples and computes their summary.
func Summarize(samples []time.Duration) Latency {
	s := slices.Clone(samples)
	slices.Sort(s)
	l := Latency{N: len(s)}
	if len(s) == 0 {
		return l
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	l.Mean = sum / time.Duration(len(s))
	l.P50, l.P90, l.P99, l.P999 = Percentile(s, 50), Percentile(s, 90), Percentile(s, 99), Percentile(s, 99.9)
	l.Max = s[len(s)-1]
	return l
}

func (l Latency) String() string {
	return fmt.Sprintf("n=%d mean=%s p50=%s p90=%s p99=%s p99.9=%s max=%s",
		l.N, ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// Rate is the steady-state completion rate of a run, in events per second:
// the events are sorted, the first skip fraction of them (warm-up: start-up,
// connection set-up, the first prefetch window) is dropped, and the rate is
// measured from the last dropped event to the last one. It returns 0 when
// fewer than two events remain.
func Rate(events []time.Time, skip float64) float64 {
	t := slices.Clone(events)
	slices.SortFunc(t, func(a, b time.Time) int { return a.Compare(b) })
	if skip < 0 {
		skip = 0
	}
	i0 := int(float64(len(t)) * skip)
	if i0 > 0 {
		i0-- // measure from the last warm-up event
	}
	if len(t)-i0 < 2 {
		return 0
	}
	span := t[len(t)-1].Sub(t[i0])
	if span <= 0 {
		return 0
	}
	return float64(len(t)-1-i0) / span.Seconds()
}
