package bench

import (
	"testing"
	"time"
)

const histText = `# HELP blacktree_status_publish_seconds x
# TYPE blacktree_status_publish_seconds histogram
blacktree_status_publish_seconds_bucket{le="0.001"} 10
blacktree_status_publish_seconds_bucket{le="0.002"} 60
blacktree_status_publish_seconds_bucket{le="0.004"} 100
blacktree_status_publish_seconds_bucket{le="+Inf"} 100
blacktree_status_publish_seconds_sum 0.2
blacktree_status_publish_seconds_count 100
blacktree_dispatch_latency_seconds_bucket{le="0.001"} 7
`

func TestParseHistogram(t *testing.T) {
	h, ok := parseHistogram(histText, "blacktree_status_publish_seconds")
	if !ok || len(h.Bounds) != 4 || h.N() != 100 {
		t.Fatalf("parseHistogram() = %+v, %v; want 4 buckets, 100 observations", h, ok)
	}
	if _, ok := parseHistogram(histText, "blacktree_nothing"); ok {
		t.Errorf("parseHistogram(missing) ok = true, want false")
	}
}

func TestHistogramQuantile(t *testing.T) {
	h, _ := parseHistogram(histText, "blacktree_status_publish_seconds")
	tail := Histogram{Bounds: h.Bounds, Counts: []float64{0, 0, 90, 100}} // 10 beyond the last bound
	for _, tc := range []struct {
		name string
		h    Histogram
		q    float64
		want time.Duration
	}{
		{"within the first bucket, from 0", h, 0.05, 500 * time.Microsecond},
		{"p50 interpolated in the second bucket", h, 0.5, 1800 * time.Microsecond},
		{"p99 in the third bucket", h, 0.99, 3950 * time.Microsecond},
		{"beyond the last finite bound", tail, 0.99, 4 * time.Millisecond},
		{"no observations", Histogram{}, 0.5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.Quantile(tc.q); got != tc.want {
				t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestHistogramSub(t *testing.T) {
	after, _ := parseHistogram(histText, "blacktree_status_publish_seconds")
	before := Histogram{Bounds: after.Bounds, Counts: []float64{10, 50, 50, 50}}
	d := after.Sub(before)
	if d.N() != 50 {
		t.Fatalf("Sub().N() = %d, want 50", d.N())
	}
	// The 50 new observations: 10 in (1,2] ms, 40 in (2,4] ms; rank 25 is
	// 15 of the 40 into (2,4].
	if got, want := d.Quantile(0.5), 2750*time.Microsecond; got != want {
		t.Errorf("Sub().Quantile(0.5) = %v, want %v", got, want)
	}
	if got := after.Sub(Histogram{}).N(); got != 100 {
		t.Errorf("Sub(empty).N() = %d, want 100", got)
	}
}
