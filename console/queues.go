package console

import (
	"context"
	"fmt"
	"html/template"
	"slices"
	"strings"
	"sync"
	"time"
)

// queueSampleTimeout bounds one count of the queues.
const queueSampleTimeout = 5 * time.Second

// queueHistory keeps the latest depths and the last points of each
// queue's ready count, for the sparklines. Run's goroutine writes it;
// pages read it.
type queueHistory struct {
	points int

	mu      sync.Mutex // guards the following; a leaf
	latest  []QueueDepth
	history map[string][]int
	err     error
}

func newQueueHistory(points int) *queueHistory {
	return &queueHistory{points: points, history: map[string][]int{}}
}

// sampleQueues counts the queues once and records the counts.
func (c *Console) sampleQueues(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, queueSampleTimeout)
	defer cancel()
	depths, err := c.cfg.Queues(ctx)
	c.queueHist.record(depths, err)
}

func (h *queueHistory) record(depths []QueueDepth, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err = err
	if err != nil {
		return
	}
	slices.SortFunc(depths, func(a, b QueueDepth) int {
		// The consumed queue first, then by name.
		if (a.Unacked >= 0) != (b.Unacked >= 0) {
			if a.Unacked >= 0 {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	h.latest = depths
	seen := make(map[string]bool, len(depths))
	for _, d := range depths {
		seen[d.Name] = true
		pts := append(h.history[d.Name], d.Ready)
		if len(pts) > h.points {
			pts = slices.Delete(pts, 0, len(pts)-h.points)
		}
		h.history[d.Name] = pts
	}
	for name := range h.history {
		if !seen[name] {
			delete(h.history, name)
		}
	}
}

// snapshot returns copies of the latest depths and the histories, and the
// last count's error.
func (h *queueHistory) snapshot() ([]QueueDepth, map[string][]int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hist := make(map[string][]int, len(h.history))
	for name, pts := range h.history {
		hist[name] = slices.Clone(pts)
	}
	return slices.Clone(h.latest), hist, h.err
}

// Sparkline size, in CSS pixels.
const (
	sparkWidth  = 120
	sparkHeight = 24
)

// sparkline draws points as an inline SVG polyline scaled to its largest
// point, with a text alternative for screen readers. It is built from
// numbers only, so it is safe to mark as HTML.
func sparkline(points []int) template.HTML {
	if len(points) < 2 {
		return template.HTML(`<span class="muted">collecting…</span>`)
	}
	top := max(slices.Max(points), 1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="ready messages, last %d samples: low %d, high %d, now %d">`,
		sparkWidth, sparkHeight, sparkWidth, sparkHeight, len(points), slices.Min(points), slices.Max(points), points[len(points)-1])
	b.WriteString(`<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="`)
	step := float64(sparkWidth-2) / float64(len(points)-1)
	for i, p := range points {
		x := 1 + step*float64(i)
		y := float64(sparkHeight-2) - float64(p)/float64(top)*float64(sparkHeight-4)
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String()) //nolint:gosec // numbers only
}
