package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// ledgerBook is the keeper's bookkeeping of the ledger queue's events
// (docs/design/orphan-ledger.md). Each job has one entry pointing at the
// message that is the latest word on it; a message stays unacked while it
// is the latest word on any job (refs), so that a keeper that dies hands
// exactly that knowledge to the next one, and is acked once every job it
// names has a later event or is done. Owned by the keeper's goroutine; not
// safe for concurrent use.
type ledgerBook struct {
	session uint64 // the consumer session the entries came on
	jobs    map[string]*ledgerEntry
	// tombs are jobs done or reported lost, until when events naming them
	// are ignored (a late alive must not bring a finished job back).
	tombs    map[string]time.Time
	tombLife time.Duration
}

type ledgerEntry struct {
	job   ledgerJob
	hubID string    // the hub that last answered for the job
	seen  time.Time // when this keeper received the latest event on it
	msg   *ledgerMsg
}

// ledgerMsg is one unacked ledger message and the number of jobs it is
// the latest word on.
type ledgerMsg struct {
	refs    int
	settled bool // its ack is handed out
	ack     broker.Acknowledger
}

func newLedgerBook(tombLife time.Duration) *ledgerBook {
	return &ledgerBook{jobs: map[string]*ledgerEntry{}, tombs: map[string]time.Time{}, tombLife: tombLife}
}

// reset forgets the entries of an ended session (their messages went back
// to the queue with it) and starts session.
func (b *ledgerBook) reset(session uint64) {
	b.session = session
	clear(b.jobs)
}

// receive applies one event that arrived at now and returns the messages
// to ack: those it supersedes for every job they named, and itself when
// it is the latest word on no job (naming only done or finished jobs).
// An event's Jobs are applied before its Done.
func (b *ledgerBook) receive(ev ledgerEvent, ack broker.Acknowledger, now time.Time) []broker.Acknowledger {
	var settle []broker.Acknowledger
	m := &ledgerMsg{ack: ack}
	for _, j := range ev.Jobs {
		if jobspec.ValidJobID(j.JobID) != nil {
			continue
		}
		if until, ok := b.tombs[j.JobID]; ok && now.Before(until) {
			continue
		}
		e := b.jobs[j.JobID]
		if e == nil {
			e = &ledgerEntry{job: ledgerJob{JobID: j.JobID}}
			b.jobs[j.JobID] = e
		} else {
			settle = b.unref(e.msg, settle)
		}
		// A hub that adopted the job from a Register may not know its
		// correlation id; keep the one learnt earlier.
		if j.CorrelationID != "" {
			e.job.CorrelationID = j.CorrelationID
		}
		if j.WorkerID != "" {
			e.job.WorkerID = j.WorkerID
		}
		e.hubID, e.seen, e.msg = ev.HubID, now, m
		m.refs++
	}
	for _, id := range ev.Done {
		if e := b.jobs[id]; e != nil {
			delete(b.jobs, id)
			settle = b.unref(e.msg, settle)
		}
		b.tombs[id] = now.Add(b.tombLife)
	}
	if m.refs == 0 && !m.settled {
		m.settled = true
		settle = append(settle, ack)
	}
	return settle
}

// unref drops one reference to m, adding m's ack to settle at the last.
func (b *ledgerBook) unref(m *ledgerMsg, settle []broker.Acknowledger) []broker.Acknowledger {
	if m.refs--; m.refs == 0 && !m.settled {
		m.settled = true
		settle = append(settle, m.ack)
	}
	return settle
}

// expired takes out the entries with no event for timeout before now;
// they are tombstoned. The caller reports them lost, then releases them.
func (b *ledgerBook) expired(now time.Time, timeout time.Duration) []*ledgerEntry {
	var out []*ledgerEntry
	for id, e := range b.jobs {
		if now.Sub(e.seen) >= timeout {
			delete(b.jobs, id)
			b.tombs[id] = now.Add(b.tombLife)
			out = append(out, e)
		}
	}
	for id, until := range b.tombs {
		if !now.Before(until) {
			delete(b.tombs, id)
		}
	}
	return out
}

// keep puts back an expired entry whose job this hub holds itself, as if
// an event had arrived at now.
func (b *ledgerBook) keep(e *ledgerEntry, now time.Time) {
	delete(b.tombs, e.job.JobID)
	e.seen = now
	b.jobs[e.job.JobID] = e
}

// release returns the messages to ack once es have been reported.
func (b *ledgerBook) release(es []*ledgerEntry) []broker.Acknowledger {
	var settle []broker.Acknowledger
	for _, e := range es {
		settle = b.unref(e.msg, settle)
	}
	return settle
}

// ledgerKeeper consumes the ledger queue while this hub is its active
// consumer and reports lost the jobs no hub answers for any more.
type ledgerKeeper struct {
	l       Ledger
	d       *Dispatcher
	book    *ledgerBook
	timeout time.Duration
	log     hclog.Logger
	active  uint64 // the session of the latest delivery (for the log)
}

func newLedgerKeeper(cfg Config, l Ledger, d *Dispatcher, log hclog.Logger) *ledgerKeeper {
	return &ledgerKeeper{l: l, d: d, book: newLedgerBook(cfg.LedgerTimeout), timeout: cfg.LedgerTimeout, log: log}
}

// ledgerCheckEvery is how often the keeper looks for expired jobs.
func ledgerCheckEvery(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 50*time.Millisecond), time.Second)
}

// run keeps the book until ctx ends.
func (k *ledgerKeeper) run(ctx context.Context) {
	tick := time.NewTicker(ledgerCheckEvery(k.timeout))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ld := <-k.l.LedgerDeliveries():
			k.receive(ld)
		case <-tick.C:
			k.check(ctx)
		}
	}
}

func (k *ledgerKeeper) receive(ld broker.LedgerDelivery) {
	switch {
	case ld.Session < k.book.session:
		return // stale: delivered again on the current session
	case ld.Session > k.book.session:
		k.book.reset(ld.Session)
	}
	if ld.Session != k.active {
		k.active = ld.Session
		k.log.Info("this hub keeps the orphan ledger now (its active consumer)", "session", ld.Session)
	}
	var ev ledgerEvent
	if err := json.Unmarshal(ld.Body, &ev); err != nil || ev.Kind == "" {
		k.log.Warn("dropping a malformed ledger event", "bytes", len(ld.Body), "error", err)
		settle(k.log, []broker.Acknowledger{ld.Acker})
		return
	}
	settle(k.log, k.book.receive(ev, ld.Acker, time.Now()))
}

// check reports lost the jobs whose events expired, unless this hub holds
// them itself, and acks their messages once the reports are confirmed.
func (k *ledgerKeeper) check(ctx context.Context) {
	live := k.l.LedgerSession()
	if live != k.book.session {
		k.book.reset(live) // the session ended: its messages went back
	}
	if live == 0 {
		return
	}
	now := time.Now()
	var lost []*ledgerEntry
	for _, e := range k.book.expired(now, k.timeout) {
		if k.d.holds(e.job.JobID) {
			k.book.keep(e, now)
			continue
		}
		lost = append(lost, e)
	}
	if len(lost) == 0 {
		return
	}
	var wg sync.WaitGroup
	reported := make([]bool, len(lost))
	for i, e := range lost {
		wg.Go(func() { reported[i] = k.d.reportLedgerLost(e.job, e.hubID) })
	}
	wg.Wait()
	var done []*ledgerEntry
	for i, e := range lost {
		if reported[i] {
			done = append(done, e)
		}
	}
	if k.l.LedgerSession() != k.book.session || ctx.Err() != nil {
		return // the messages went back to the queue: the next keeper reports again
	}
	settle(k.log, k.book.release(done))
}

// settle acks ledger messages; a failure means the session ended and the
// messages go to the next keeper.
func settle(log hclog.Logger, acks []broker.Acknowledger) {
	for _, a := range acks {
		if err := a.Ack(); err != nil {
			log.Debug("ledger ack failed (the next keeper gets the event)", "error", err)
		}
	}
}

// reportLedgerLost publishes a lost status for a job the ledger holds and
// no hub answers for any more: hubID stopped renewing it. It reports
// whether the broker confirmed the status.
func (d *Dispatcher) reportLedgerLost(j ledgerJob, hubID string) bool {
	err := fmt.Errorf("worker %s lost: hub %s stopped renewing the job", j.WorkerID, hubID)
	d.log.Warn("reporting job lost from the orphan ledger", "job_id", j.JobID, "worker_id", j.WorkerID, "hub_id", hubID, "error", err)
	resp := jobspec.Failed(j.JobID, blacktreev1.JobStage_JOB_STAGE_DISPATCH, err)
	resp.WorkerId = j.WorkerID
	sent, err := d.publish(j.JobID, resp, j.CorrelationID)
	if err != nil {
		return false
	}
	d.mu.Lock()
	d.eventFinishedLocked(j.JobID, sent)
	d.mu.Unlock()
	d.metrics.lost.Inc()
	d.metrics.failed.Inc()
	return true
}
