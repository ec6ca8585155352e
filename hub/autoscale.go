package hub

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Autoscaling signals on /metrics (docs/protocol.md#autoscaling-signals):
//
//   - blacktree_queue_messages_ready{queue}: messages ready in each of the
//     hub's queues, from a passive queue.declare (the broker's own count;
//     no management plugin needed). Asked at most once a second whatever
//     the scrapers, each ask bounded by queueInspectTimeout; absent while
//     the broker does not answer.
//   - blacktree_queue_messages_unacked{queue}: deliveries of the execute
//     queue this hub holds unacknowledged (waiting for a worker, offered,
//     or accepted with the ack on its way). The broker's unacked count is
//     the sum over the hubs, plus what is in flight to them.
//   - blacktree_slots{labels,kind}: slots of the live workers that take
//     jobs (not draining), kind "total" or "free", by label set: labels is
//     the worker's labels as sorted k=v pairs joined by commas ("" for
//     none). At most maxSlotLabelSets label sets are exported; the workers
//     of the others are summed under labels="_other", so the series stay
//     bounded whatever the fleet reports.

// QueueInspector is implemented by brokers that can count the messages in
// their queues. *rabbit.Client implements it.
type QueueInspector interface {
	// QueueDepths returns the ready messages of each queue by name.
	QueueDepths(ctx context.Context) (map[string]int, error)
	// ExecuteQueue is the name of the queue the hub consumes.
	ExecuteQueue() string
}

const (
	// maxSlotLabelSets bounds the label sets blacktree_slots exports.
	maxSlotLabelSets = 64
	// otherLabelSet is the label set the workers beyond the bound count under.
	otherLabelSet = "_other"
	// queueInspectEvery is how old a queue count may be before a scrape
	// asks the broker again.
	queueInspectEvery = time.Second
	// queueInspectTimeout bounds one ask.
	queueInspectTimeout = 2 * time.Second
)

// labelSetKey is the canonical form of a label set: sorted k=v pairs
// joined by commas.
func labelSetKey(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
	}
	return b.String()
}

// slotCount is the total and free slots of one label set.
type slotCount struct{ total, free int }

// slotsByLabelSet sums the slots of the live workers that take jobs by
// label set, at most maxSlotLabelSets of them (the largest by total
// slots), the rest under otherLabelSet.
func (m *WorkerManager) slotsByLabelSet() map[string]slotCount {
	type sample struct {
		labels      map[string]string
		total, free int
	}
	m.mu.Lock()
	samples := make([]sample, 0, len(m.workers))
	for _, e := range m.workers {
		if !e.current || e.dead || e.draining {
			continue
		}
		// e.w.labels never changes after registration: read it
		// after the lock is released.
		samples = append(samples, sample{labels: e.w.labels, total: e.w.slots, free: max(e.w.slots-len(e.jobs), 0)})
	}
	m.mu.Unlock()
	sets := map[string]slotCount{}
	for _, s := range samples {
		k := labelSetKey(s.labels)
		c := sets[k]
		c.total += s.total
		c.free += s.free
		sets[k] = c
	}
	if len(sets) <= maxSlotLabelSets {
		return sets
	}
	keys := slices.SortedFunc(maps.Keys(sets), func(a, b string) int {
		if d := sets[b].total - sets[a].total; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	out := make(map[string]slotCount, maxSlotLabelSets+1)
	var other slotCount
	for i, k := range keys {
		if i < maxSlotLabelSets {
			out[k] = sets[k]
			continue
		}
		other.total += sets[k].total
		other.free += sets[k].free
	}
	out[otherLabelSet] = other
	return out
}

// autoscaleCollector exports the autoscaling gauges.
type autoscaleCollector struct {
	m         *WorkerManager
	d         *Dispatcher
	inspector QueueInspector // nil: no ready counts
	execQueue string

	ready, unacked, slots *prometheus.Desc

	mu      sync.Mutex // guards the following; held across one ask of the broker
	counted time.Time
	depths  map[string]int
}

func newAutoscaleCollector(m *WorkerManager, d *Dispatcher, b Broker) *autoscaleCollector {
	c := &autoscaleCollector{
		m:         m,
		d:         d,
		execQueue: "execute",
		ready: prometheus.NewDesc("blacktree_queue_messages_ready",
			"Messages ready for delivery in the hub's queue, as the broker counts them (passive queue.declare, at most once a second).",
			[]string{"queue"}, nil),
		unacked: prometheus.NewDesc("blacktree_queue_messages_unacked",
			"Deliveries of the queue this hub holds unacknowledged: waiting for a worker, offered, or accepted with the ack on its way. Sum over the hubs for the queue's.",
			[]string{"queue"}, nil),
		slots: prometheus.NewDesc("blacktree_slots",
			`Slots of the live workers that take jobs (not draining), by kind (total, free) and label set (sorted k=v pairs joined by commas; at most 64 sets, the rest under "_other").`,
			[]string{"labels", "kind"}, nil),
	}
	if qi, ok := b.(QueueInspector); ok {
		c.inspector = qi
		c.execQueue = qi.ExecuteQueue()
	}
	return c
}

func (c *autoscaleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.unacked
	ch <- c.slots
}

func (c *autoscaleCollector) Collect(ch chan<- prometheus.Metric) {
	for q, n := range c.queueDepths() {
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(n), q)
	}
	ch <- prometheus.MustNewConstMetric(c.unacked, prometheus.GaugeValue, float64(c.d.unackedCount()), c.execQueue)
	for set, n := range c.m.slotsByLabelSet() {
		ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(n.total), set, "total")
		ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(n.free), set, "free")
	}
}

// queueDepths returns the latest ready counts, asking the broker when
// they are older than queueInspectEvery; nil when it cannot answer.
func (c *autoscaleCollector) queueDepths() map[string]int {
	if c.inspector == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.counted.IsZero() && time.Since(c.counted) < queueInspectEvery {
		return c.depths // also a failed ask's nil: a broker that is down is asked once a second
	}
	ctx, cancel := context.WithTimeout(context.Background(), queueInspectTimeout)
	defer cancel()
	depths, err := c.inspector.QueueDepths(ctx)
	if err != nil {
		depths = nil
	}
	c.depths, c.counted = depths, time.Now()
	return depths
}
