package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Histogram is one Prometheus histogram as scraped: cumulative counts per
// upper bound, the last bound +Inf.
type Histogram struct {
	Bounds []float64 // upper bounds (le), ascending, seconds
	Counts []float64 // cumulative counts, one per bound
}

// parseHistogram reads histogram name's buckets from Prometheus text
// format (name_bucket{le="..."} lines). ok is false when it has none.
func parseHistogram(text, name string) (h Histogram, ok bool) {
	prefix := name + `_bucket{le="`
	for _, l := range strings.Split(text, "\n") {
		rest, found := strings.CutPrefix(l, prefix)
		if !found {
			continue
		}
		le, count, found := strings.Cut(rest, `"} `)
		if !found {
			continue
		}
		b, err1 := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		c, err2 := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		h.Bounds = append(h.Bounds, b)
		h.Counts = append(h.Counts, c)
	}
	return h, len(h.Bounds) > 0
}

// Sub returns h − before, bucket by bucket: the observations made between
// two scrapes of one histogram. A before of another shape counts as empty.
func (h Histogram) Sub(before Histogram) Histogram {
	out := Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts))}
	for i, c := range h.Counts {
		if len(before.Counts) == len(h.Counts) {
			c -= before.Counts[i]
		}
		out.Counts[i] = c
	}
	return out
}

// N is the number of observations.
func (h Histogram) N() int {
	if len(h.Counts) == 0 {
		return 0
	}
	return int(h.Counts[len(h.Counts)-1])
}

// Quantile estimates the q-quantile (0 < q < 1) as Prometheus's
// histogram_quantile does: linear within the bucket the rank falls in, the
// first bucket starting at 0. A rank in the +Inf bucket gives the largest
// finite bound. 0 for no observations.
func (h Histogram) Quantile(q float64) time.Duration {
	n := h.N()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	lower, below := 0.0, 0.0
	for i, b := range h.Bounds {
		c := h.Counts[i]
		if c >= rank {
			if math.IsInf(b, 1) {
				return seconds(lower)
			}
			if c == below {
				return seconds(b)
			}
			return seconds(lower + (b-lower)*(rank-below)/(c-below))
		}
		lower, below = b, c
	}
	return seconds(lower)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Histogram scrapes the hub's /metrics for histogram name.
func (h *Hub) Histogram(ctx context.Context, name string) (Histogram, error) {
	text, err := h.metricsText(ctx)
	if err != nil {
		return Histogram{}, err
	}
	hist, ok := parseHistogram(text, name)
	if !ok {
		return Histogram{}, fmt.Errorf("no histogram %s in the hub's /metrics", name)
	}
	return hist, nil
}
