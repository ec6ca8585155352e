package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/blacktree/blacktree/internal/broker"
)

// Ledger is an optional Broker capability (*rabbit.Client has it): a
// durable queue of job-liveness events that every hub publishes and one
// hub at a time, the keeper, consumes (docs/design/orphan-ledger.md). With
// it, a job a worker accepted is reported by someone even when the hub
// that dispatched it dies and the worker never comes back. Without it (or
// when LedgerEnabled is false) a hub behaves as before.
type Ledger interface {
	// LedgerEnabled reports whether the ledger queue is configured.
	LedgerEnabled() bool
	// PublishLedger publishes one event and returns once the broker has
	// confirmed it (publishing again across reconnects).
	PublishLedger(ctx context.Context, m broker.Message) error
	// LedgerDeliveries yields the events while this hub is the keeper.
	LedgerDeliveries() <-chan broker.LedgerDelivery
	// LedgerSession numbers the live consumer session (0: none);
	// deliveries of another session are stale.
	LedgerSession() uint64
}

// Kinds of ledger events (docs/protocol.md#orphan-ledger).
const (
	// ledgerUpdate: Jobs were accepted by workers (the hub acks their
	// deliveries once the event is confirmed) and Done jobs have their
	// final statuses confirmed, since the hub's previous update.
	ledgerUpdate = "update"
	// ledgerAlive: the hub still answers for Jobs (running, orphaned
	// within their grace, or having their status published).
	ledgerAlive = "alive"
)

// ledgerEvent is one ledger message's JSON body.
type ledgerEvent struct {
	Kind  string      `json:"kind"`
	HubID string      `json:"hubId"`
	Jobs  []ledgerJob `json:"jobs,omitempty"`
	Done  []string    `json:"done,omitempty"`
}

// ledgerJob is what a lost report needs of a job.
type ledgerJob struct {
	JobID         string `json:"jobId"`
	CorrelationID string `json:"correlationId,omitempty"`
	WorkerID      string `json:"workerId,omitempty"`
}

// ledgerFlushWait bounds the last flush of a stopping hub's pending
// events.
const ledgerFlushWait = 5 * time.Second

// ledgerWriter publishes this hub's ledger events from one goroutine
// (run): accepted jobs and done jobs are queued by the Dispatcher and
// published together in one update event, as many as gathered while the
// previous publish waited for its confirm (no added delay), and an alive
// event every Config.LedgerRenewInterval.
type ledgerWriter struct {
	l     Ledger
	hubID string
	renew time.Duration
	retry time.Duration // Config.PublishRetryMax
	log   hclog.Logger
	// holding lists the jobs this hub answers for (the Dispatcher's).
	holding func() []ledgerJob
	seq     atomic.Uint64 // numbers message ids
	// confirmedAccepts counts the accepted jobs whose event was confirmed
	// and whose delivery was acked.
	confirmedAccepts atomic.Int64

	mu       sync.Mutex // guards the following
	accepted []ledgerJob
	dels     []*broker.Delivery // the accepted jobs' deliveries, acked after the confirm
	done     []string
	wake     chan struct{} // cap 1: something is queued
}

func newLedgerWriter(cfg Config, l Ledger, holding func() []ledgerJob, log hclog.Logger) *ledgerWriter {
	return &ledgerWriter{
		l:       l,
		hubID:   cfg.HubID,
		renew:   cfg.LedgerRenewInterval,
		retry:   cfg.PublishRetryMax,
		log:     log,
		holding: holding,
		wake:    make(chan struct{}, 1),
	}
}

// accept queues j for the next update event; del is acked once that is
// confirmed (nacked with requeue if the hub stops first).
func (w *ledgerWriter) accept(j ledgerJob, del *broker.Delivery) {
	w.mu.Lock()
	w.accepted = append(w.accepted, j)
	w.dels = append(w.dels, del)
	w.mu.Unlock()
	w.poke()
}

// finished queues jobID as done for the next update event.
func (w *ledgerWriter) finished(jobID string) {
	w.mu.Lock()
	w.done = append(w.done, jobID)
	w.mu.Unlock()
	w.poke()
}

func (w *ledgerWriter) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run publishes until ctx ends, then flushes what is queued for at most
// ledgerFlushWait and requeues the deliveries of accepted jobs it could
// not publish.
func (w *ledgerWriter) run(ctx context.Context) {
	tick := time.NewTicker(w.renew)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerFlushWait)
			w.flush(fctx)
			cancel()
			w.mu.Lock()
			dels, n := w.dels, len(w.done)
			w.accepted, w.dels, w.done = nil, nil, nil
			w.mu.Unlock()
			for _, del := range dels {
				_ = del.Nack(true) // redelivered: at-least-once, never silent
			}
			if len(dels) > 0 || n > 0 {
				w.log.Warn("hub stopping; ledger events not published", "accepted", len(dels), "done", n)
			}
			return
		case <-w.wake:
			w.flush(ctx)
		case <-tick.C:
			if jobs := w.holding(); len(jobs) > 0 {
				_ = w.publish(ctx, ledgerEvent{Kind: ledgerAlive, HubID: w.hubID, Jobs: jobs})
			}
		}
	}
}

// flush publishes the queued accepted and done jobs in one update event,
// then acks the accepted jobs' deliveries. What it could not publish
// stays queued.
func (w *ledgerWriter) flush(ctx context.Context) {
	w.mu.Lock()
	accepted, dels, done := w.accepted, w.dels, w.done
	w.accepted, w.dels, w.done = nil, nil, nil
	w.mu.Unlock()
	if len(accepted) == 0 && len(done) == 0 {
		return
	}
	if err := w.publish(ctx, ledgerEvent{Kind: ledgerUpdate, HubID: w.hubID, Jobs: accepted, Done: done}); err != nil {
		w.requeue(accepted, dels, done)
		return
	}
	w.confirmedAccepts.Add(int64(len(dels)))
	for i, del := range dels {
		if w.log.IsDebug() {
			w.log.Debug("accepted job in the ledger", "job_id", accepted[i].JobID)
		}
		if err := del.Ack(); err != nil {
			// A stale delivery is redelivered by the broker and then
			// dropped as a duplicate of this in-flight job.
			w.log.Warn("ack after acceptance failed", "job_id", accepted[i].JobID, "error", err)
		}
	}
}

// requeue puts unpublished events back in front of the queue.
func (w *ledgerWriter) requeue(accepted []ledgerJob, dels []*broker.Delivery, done []string) {
	w.mu.Lock()
	w.accepted = append(accepted, w.accepted...)
	w.dels = append(dels, w.dels...)
	w.done = append(done, w.done...)
	w.mu.Unlock()
}

// publish publishes ev, retrying with backoff until the broker confirms
// or ctx ends.
func (w *ledgerWriter) publish(ctx context.Context, ev ledgerEvent) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("hub: encode ledger event: %w", err)
	}
	msg := broker.Message{Body: body, MessageID: w.hubID + "-" + strconv.FormatUint(w.seq.Add(1), 10)}
	backoff := 100 * time.Millisecond
	for {
		err := w.l.PublishLedger(ctx, msg)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		w.log.Warn("publishing a ledger event failed; retrying", "kind", ev.Kind, "jobs", len(ev.Jobs), "done", len(ev.Done), "error", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(backoff*2, w.retry)
	}
}

// ledgerHolding lists the jobs this hub answers for in its alive events:
// those a worker accepted (their deliveries are acked, so the broker no
// longer holds them) that are running, orphaned within their grace, or
// having their status published.
func (d *Dispatcher) ledgerHolding() []ledgerJob {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []ledgerJob
	for _, j := range d.jobs {
		if j.del != nil || j.lastWorkerID == "" {
			continue
		}
		switch j.state {
		case jobRunning, jobOrphaned, jobPublishing:
			out = append(out, ledgerJob{JobID: j.id, CorrelationID: j.corrID, WorkerID: j.lastWorkerID})
		}
	}
	return out
}

// holds reports whether this hub answers for jobID itself (the keeper
// does not report such a job lost).
func (d *Dispatcher) holds(jobID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	j := d.jobs[jobID]
	return j != nil && (j.state == jobRunning || j.state == jobOrphaned || j.state == jobPublishing)
}
