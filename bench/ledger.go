package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Ledger records when each job was published and when its status arrived,
// and accounts for the run: every published id must get exactly one
// status; anything else (lost, duplicate, unexpected, failed) is counted.
// It is safe for concurrent use.
type Ledger struct {
	mu          sync.Mutex // guards the following
	published   map[string]time.Time
	first       map[string]time.Time    // first status per published id
	worked      map[string][2]time.Time // the first status's startedAt, finishedAt, when it has them
	statuses    map[string]int          // statuses per id (published or not)
	failed      int
	errors      map[string]string // first error text of a failed status per id
	undecodable int
	answered    int
	changed     chan struct{} // closed and replaced on every new answer
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{published: map[string]time.Time{}, first: map[string]time.Time{}, worked: map[string][2]time.Time{},
		statuses: map[string]int{}, errors: map[string]string{}, changed: make(chan struct{})}
}

// Published records that id is being published at t. Call it before the
// publish, so a fast status never finds the id unknown.
func (l *Ledger) Published(id string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.published[id] = t
}

// Received records a status for id that arrived at t; errText is the
// status's error field.
func (l *Ledger) Received(id string, success bool, errText string, t time.Time) {
	l.ReceivedWorked(id, success, errText, t, time.Time{}, time.Time{})
}

// ReceivedWorked is Received for a status that says when the worker
// started and finished the job (Blacktree's startedAt, finishedAt).
func (l *Ledger) ReceivedWorked(id string, success bool, errText string, t, started, finished time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.statuses[id]++
	if !success {
		l.failed++
		if _, ok := l.errors[id]; !ok {
			l.errors[id] = errText
		}
	}
	if _, ok := l.published[id]; !ok {
		return
	}
	if _, seen := l.first[id]; seen {
		return
	}
	l.first[id] = t
	l.answered++
	if !started.IsZero() && !finished.IsZero() {
		l.worked[id] = [2]time.Time{started, finished}
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// Undecodable counts a status body that could not be decoded.
func (l *Ledger) Undecodable() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.undecodable++
}

// Account is the outcome of a run.
type Account struct {
	Published, Answered, Lost, Duplicates, Unexpected, Failed, Undecodable int
}

func (a Account) String() string {
	return fmt.Sprintf("published=%d answered=%d lost=%d duplicates=%d unexpected=%d failed=%d undecodable=%d",
		a.Published, a.Answered, a.Lost, a.Duplicates, a.Unexpected, a.Failed, a.Undecodable)
}

// Clean reports whether every published job got exactly one successful
// status and nothing else arrived.
func (a Account) Clean() bool {
	return a.Lost == 0 && a.Duplicates == 0 && a.Unexpected == 0 && a.Failed == 0 && a.Undecodable == 0
}

// Account accounts for everything recorded so far.
func (l *Ledger) Account() Account {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := Account{Published: len(l.published), Answered: l.answered, Failed: l.failed, Undecodable: l.undecodable}
	a.Lost = a.Published - a.Answered
	for id, n := range l.statuses {
		if _, ok := l.published[id]; !ok {
			a.Unexpected += n
			continue
		}
		a.Duplicates += n - 1
	}
	return a
}

// Latencies returns status-arrival minus publish time for every answered
// job.
func (l *Ledger) Latencies() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]time.Duration, 0, len(l.first))
	for id, t := range l.first {
		out = append(out, t.Sub(l.published[id]))
	}
	return out
}

// Legs splits the latency of every answered job whose status says when
// the worker started and finished it: publish → started (broker, hub,
// dispatch, RunJob, the worker picking it up) and finished → status
// received (JobResult, the hub's publish, the broker, the collector).
// All clocks are this machine's wall clock.
func (l *Ledger) Legs() (toWorker, back []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, w := range l.worked {
		toWorker = append(toWorker, w[0].Sub(l.published[id]))
		back = append(back, l.first[id].Sub(w[1]))
	}
	return toWorker, back
}

// StatusTimes returns the arrival time of every answered job's first
// status.
func (l *Ledger) StatusTimes() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]time.Time, 0, len(l.first))
	for _, t := range l.first {
		out = append(out, t)
	}
	return out
}

// ErrorOf returns the error text of id's first failed status.
func (l *Ledger) ErrorOf(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.errors[id]
	return e, ok
}

// StatusAt returns when id's first status arrived.
func (l *Ledger) StatusAt(id string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.first[id]
	return t, ok
}

// WaitAnswered waits until at least n published jobs have a status, or
// ctx ends.
func (l *Ledger) WaitAnswered(ctx context.Context, n int) error {
	for {
		l.mu.Lock()
		got, changed := l.answered, l.changed
		l.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d statuses: %w", got, n, ctx.Err())
		}
	}
}
