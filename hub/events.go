package hub

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// EventPublisher is an optional Broker capability (*rabbit.Client with an
// events exchange): live job events for whoever wants to watch a job
// (docs/protocol.md#job-events). Events are best effort; status.queue
// stays the one at-least-once record of a job's outcome.
type EventPublisher interface {
	// EventsEnabled reports whether an events exchange is configured.
	EventsEnabled() bool
	// OpenEvents declares the events exchange, waiting for the broker as
	// long as ctx allows.
	OpenEvents(ctx context.Context) error
	// PublishEvent publishes one event, without a confirm, waiting for
	// the broker as long as ctx allows.
	PublishEvent(ctx context.Context, routingKey string, body []byte) error
}

// Kinds of job events: the last part of the routing key
// job.<jobId>.<event> and the event's "event" field.
const (
	eventAccepted = "accepted"
	eventLog      = "log"
	eventFinished = "finished"
)

// Reasons of blacktree_job_events_dropped_total.
const (
	dropBufferFull = "buffer_full" // the buffer was full when the event came
	dropBroker     = "broker"      // publishing it failed
)

// Bounds of the event buffer: events wait in it for the one publishing
// goroutine; an event that finds it full (in count or in bytes) is
// dropped. 32 MiB holds about five hundred full log chunks.
const (
	eventBufferEvents = 4096
	eventBufferBytes  = 32 << 20
	// maxEventLogBytes bounds a log event's data: a worker's JobLog chunk
	// is at most this large (docs/protocol.md#job-output).
	maxEventLogBytes = 64 << 10
	// eventFlushWait bounds the last flush of a stopping hub's events.
	eventFlushWait = 2 * time.Second
	// dropLogEvery rate-limits the warning about dropped events.
	dropLogEvery = 10 * time.Second
	// eventTimeLayout is RFC 3339 with microseconds, always written out.
	eventTimeLayout = "2006-01-02T15:04:05.000000Z07:00"
)

// jobEvent is one event's JSON body (docs/protocol.md#job-events).
type jobEvent struct {
	JobID    string `json:"jobId"`
	Event    string `json:"event"`
	WorkerID string `json:"workerId"`
	HubID    string `json:"hubId"`
	Seq      uint64 `json:"seq"`
	Time     string `json:"time"`
	// Chunk is a log event's JobLog.seq: the worker's count of the job's
	// output chunks, which goes on across hubs.
	Chunk *uint64 `json:"chunk,omitempty"`
	// Data is a log event's output, as the worker scrubbed it.
	Data string `json:"data,omitempty"`
	// Response is a finished event's JobResponse, as published on
	// status.queue.
	Response json.RawMessage `json:"response,omitempty"`
}

// pendingEvent is an event waiting in the buffer; it is encoded by the
// publishing goroutine, off the dispatcher's lock.
type pendingEvent struct {
	kind     string
	jobID    string
	workerID string
	seq      uint64
	at       time.Time
	chunk    uint64
	data     string
	resp     *blacktreev1.JobResponse // finished: never changed after it is queued
	size     int                      // bytes counted against eventBufferBytes
}

// eventPublisher publishes job events from one goroutine (run), fed by a
// buffer bounded in events and bytes; offer never blocks. Events leave in
// the order they were offered: the Dispatcher numbers a job's events and
// offers them under its mu, so seq order is publish order.
type eventPublisher struct {
	pub      EventPublisher
	hubID    string
	log      hclog.Logger
	queue    chan pendingEvent
	maxBytes int64
	queued   atomic.Int64 // bytes of the events in queue

	published prometheus.Counter
	dropped   *prometheus.CounterVec

	dropMu      sync.Mutex // guards the following; a leaf
	dropsUnsaid int        // drops since the last warning
	lastWarn    time.Time
}

// newEventPublisher returns nil when b publishes no events.
func newEventPublisher(b Broker, hubID string, m *metrics, log hclog.Logger) *eventPublisher {
	pub, ok := b.(EventPublisher)
	if !ok || !pub.EventsEnabled() {
		return nil
	}
	p := newEventBuffer(pub, hubID, eventBufferEvents, eventBufferBytes, log)
	m.registry.MustRegister(p.published, p.dropped)
	return p
}

// newEventBuffer builds a publisher with the given bounds.
func newEventBuffer(pub EventPublisher, hubID string, events int, bytes int64, log hclog.Logger) *eventPublisher {
	return &eventPublisher{
		pub:       pub,
		hubID:     hubID,
		log:       log,
		queue:     make(chan pendingEvent, events),
		maxBytes:  bytes,
		published: counter("job_events_published_total", "Job events handed to the broker (events exchange)."),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blacktree",
			Name:      "job_events_dropped_total",
			Help:      "Job events dropped: the buffer was full (buffer_full) or the broker refused them (broker).",
		}, []string{"reason"}),
	}
}

// offer queues e, or drops it (counted, and logged at most every
// dropLogEvery) when the buffer is full. It never blocks.
func (p *eventPublisher) offer(e pendingEvent) {
	e.size = len(e.data) + len(e.resp.GetLogs()) + len(e.resp.GetError()) + 256
	if p.queued.Add(int64(e.size)) > p.maxBytes {
		p.queued.Add(-int64(e.size))
		p.drop(dropBufferFull, e)
		return
	}
	select {
	case p.queue <- e:
	default:
		p.queued.Add(-int64(e.size))
		p.drop(dropBufferFull, e)
	}
}

func (p *eventPublisher) drop(reason string, e pendingEvent) {
	p.dropped.WithLabelValues(reason).Inc()
	p.dropMu.Lock()
	p.dropsUnsaid++
	n, now := p.dropsUnsaid, time.Now()
	warn := now.Sub(p.lastWarn) >= dropLogEvery
	if warn {
		p.dropsUnsaid, p.lastWarn = 0, now
	}
	p.dropMu.Unlock()
	if warn {
		p.log.Warn("job events dropped (best effort; status.queue has every outcome)", "dropped", n, "reason", reason, "job_id", e.jobID, "event", e.kind)
	}
}

// run declares the exchange, then publishes queued events until ctx ends;
// then it publishes what is queued for at most eventFlushWait.
func (p *eventPublisher) run(ctx context.Context) {
	if err := p.pub.OpenEvents(ctx); err != nil && ctx.Err() == nil {
		p.log.Warn("cannot declare the events exchange yet; retrying with the first event", "error", err)
	}
	for {
		select {
		case e := <-p.queue:
			p.send(ctx, e)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventFlushWait)
			defer cancel()
			for {
				select {
				case e := <-p.queue:
					p.send(fctx, e)
				default:
					return
				}
			}
		}
	}
}

// send encodes and publishes one event.
func (p *eventPublisher) send(ctx context.Context, e pendingEvent) {
	p.queued.Add(-int64(e.size))
	body, err := p.encode(e)
	if err == nil {
		err = p.pub.PublishEvent(ctx, "job."+e.jobID+"."+e.kind, body)
	}
	if err != nil {
		p.log.Debug("job event not published", "job_id", e.jobID, "event", e.kind, "error", err)
		p.drop(dropBroker, e)
		return
	}
	p.published.Inc()
}

func (p *eventPublisher) encode(e pendingEvent) ([]byte, error) {
	ev := jobEvent{
		JobID:    e.jobID,
		Event:    e.kind,
		WorkerID: e.workerID,
		HubID:    p.hubID,
		Seq:      e.seq,
		Time:     e.at.UTC().Format(eventTimeLayout),
	}
	switch e.kind {
	case eventLog:
		chunk := e.chunk
		ev.Chunk, ev.Data = &chunk, e.data
	case eventFinished:
		resp, err := jobspec.EncodeResponse(e.resp)
		if err != nil {
			return nil, err
		}
		ev.Response = resp
	}
	return json.Marshal(ev)
}

// The Dispatcher's side: a job's events are numbered in job.eventSeq and
// offered under d.mu, so that a job's events are queued in seq order.

// eventAcceptedLocked offers j's accepted event when w is the first
// worker this hub sees j accepted by (or adopted from). A job that comes
// back to a session here after its worker reconnected keeps its sequence.
func (d *Dispatcher) eventAcceptedLocked(j *job, w *Worker) {
	if d.events == nil || j.eventSeq != 0 {
		return
	}
	j.eventSeq = 1
	d.events.offer(pendingEvent{kind: eventAccepted, jobID: j.id, workerID: w.id, seq: 1, at: time.Now()})
}

// jobLog offers a log event for a chunk of a job's output, and writes it
// to the console's log tap, when w is the session the job runs on; other
// chunks are ignored.
func (d *Dispatcher) jobLog(w *Worker, l *blacktreev1.JobLog) {
	if d.events == nil && d.tap == nil {
		return
	}
	data := l.GetData()
	if len(data) > maxEventLogBytes {
		data = jobspec.TruncateMiddle(data, maxEventLogBytes)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	j := d.jobs[l.GetJobId()]
	if j == nil || j.w != w || j.state != jobRunning {
		return
	}
	if d.tap != nil {
		d.tap.write(j.id, data)
	}
	if d.events == nil {
		return
	}
	j.eventSeq++
	d.events.offer(pendingEvent{
		kind:     eventLog,
		jobID:    j.id,
		workerID: w.id,
		seq:      j.eventSeq,
		at:       time.Now(),
		chunk:    l.GetSeq(),
		data:     data,
	})
}

// eventFinishedLocked offers the finished event of a job whose status,
// resp, the broker has just confirmed. A job this hub holds no events for
// (an invalid request, a result it had not dispatched) gets seq 1.
func (d *Dispatcher) eventFinishedLocked(jobID string, resp *blacktreev1.JobResponse) {
	if d.tap != nil {
		d.tap.finish(jobID, resp)
	}
	if d.events == nil {
		return
	}
	seq := uint64(1)
	if j := d.jobs[jobID]; j != nil {
		j.eventSeq++
		seq = j.eventSeq
	}
	d.events.offer(pendingEvent{kind: eventFinished, jobID: jobID, workerID: resp.GetWorkerId(), seq: seq, at: time.Now(), resp: resp})
}
