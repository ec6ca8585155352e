package hub

import (
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/rabbit"
)

// countingAck records its acks.
type countingAck struct{ acks int }

func (a *countingAck) Ack() error      { a.acks++; return nil }
func (a *countingAck) Nack(bool) error { return nil }
func (a *countingAck) acked() bool     { return a.acks > 0 }
func ack(acks []broker.Acknowledger) []broker.Acknowledger {
	for _, a := range acks {
		_ = a.Ack()
	}
	return acks
}

func jobsNamed(ids ...string) []ledgerJob {
	out := make([]ledgerJob, len(ids))
	for i, id := range ids {
		out[i] = ledgerJob{JobID: id, CorrelationID: "corr-" + id, WorkerID: "w1"}
	}
	return out
}

// TestLedgerBookSupersedes: an accepted event is acked when an alive names
// its job; a batched alive only once every job it names has a later
// event; done acks itself and the job's latest event.
func TestLedgerBookSupersedes(t *testing.T) {
	b := newLedgerBook(time.Minute)
	t0 := time.Unix(1000, 0)
	acc := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerUpdate, HubID: "a", Jobs: jobsNamed("j1", "j2")}, acc, t0))
	if acc.acked() {
		t.Fatalf("accepted event acked while it is the latest word on its jobs")
	}
	alive1 := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerAlive, HubID: "a", Jobs: jobsNamed("j1")}, alive1, t0))
	if acc.acked() {
		t.Fatalf("accepted event acked while still the latest word on j2")
	}
	alive2 := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerAlive, HubID: "a", Jobs: jobsNamed("j1", "j2")}, alive2, t0))
	if !acc.acked() || !alive1.acked() || alive2.acked() {
		t.Fatalf("after a later alive for both jobs: accepted acked %v, first alive %v, second alive %v; want true, true, false",
			acc.acked(), alive1.acked(), alive2.acked())
	}
	done := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerUpdate, HubID: "a", Done: []string{"j1"}}, done, t0))
	if !done.acked() || alive2.acked() {
		t.Fatalf("done j1: done acked %v (want true), alive acked %v (want false: still the word on j2)", done.acked(), alive2.acked())
	}
	done2 := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerUpdate, HubID: "b", Done: []string{"j2"}}, done2, t0))
	if !alive2.acked() || len(b.jobs) != 0 {
		t.Fatalf("done j2: alive acked %v, %d jobs left; want acked and none", alive2.acked(), len(b.jobs))
	}
	// A late alive for a finished job neither brings it back nor stays held.
	late := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerAlive, HubID: "a", Jobs: jobsNamed("j1")}, late, t0.Add(time.Second)))
	if !late.acked() || len(b.jobs) != 0 {
		t.Fatalf("late alive for a done job: acked %v, %d jobs; want acked, none", late.acked(), len(b.jobs))
	}
	// One update may accept a job and finish it: acked once, nothing kept.
	both := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerUpdate, HubID: "a", Jobs: jobsNamed("j3"), Done: []string{"j3"}}, both, t0))
	if both.acks != 1 || len(b.jobs) != 0 {
		t.Fatalf("update accepting and finishing j3: %d acks, %d jobs; want 1, none", both.acks, len(b.jobs))
	}
}

// TestLedgerBookExpires: a job expires timeout after its latest event, is
// reported with what the events said (the correlation id survives an
// alive that lacks it), and its message is acked only on release.
func TestLedgerBookExpires(t *testing.T) {
	b := newLedgerBook(time.Minute)
	t0 := time.Unix(1000, 0)
	acc := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerUpdate, HubID: "a", Jobs: jobsNamed("j1")}, acc, t0))
	alive := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerAlive, HubID: "b", Jobs: []ledgerJob{{JobID: "j1", WorkerID: "w2"}}}, alive, t0.Add(5*time.Second)))
	if got := b.expired(t0.Add(14*time.Second), 10*time.Second); len(got) != 0 {
		t.Fatalf("expired 9s after the latest event with a 10s timeout: %d entries", len(got))
	}
	got := b.expired(t0.Add(15*time.Second), 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("expired at the timeout: %d entries, want 1", len(got))
	}
	e := got[0]
	if e.job.CorrelationID != "corr-j1" || e.job.WorkerID != "w2" || e.hubID != "b" {
		t.Errorf("expired entry %+v from hub %s; want corr-j1, worker w2, hub b", e.job, e.hubID)
	}
	if alive.acked() {
		t.Fatalf("the latest event was acked before the lost report")
	}
	ack(b.release(got))
	if !alive.acked() {
		t.Fatalf("the latest event was not acked on release")
	}
	again := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerAlive, HubID: "b", Jobs: jobsNamed("j1")}, again, t0.Add(16*time.Second)))
	if len(b.jobs) != 0 {
		t.Fatalf("an alive after the lost report brought the job back")
	}
}

// TestLedgerBookKeepAndReset: a job the keeper's own hub holds is kept
// (its timeout counts again from now); a new session forgets everything
// without acking (those messages went back to the queue).
func TestLedgerBookKeepAndReset(t *testing.T) {
	b := newLedgerBook(time.Minute)
	b.reset(1)
	t0 := time.Unix(1000, 0)
	acc := &countingAck{}
	ack(b.receive(ledgerEvent{Kind: ledgerUpdate, HubID: "a", Jobs: jobsNamed("j1")}, acc, t0))
	got := b.expired(t0.Add(10*time.Second), 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("expired: %d entries, want 1", len(got))
	}
	b.keep(got[0], t0.Add(10*time.Second))
	if n := len(b.expired(t0.Add(19*time.Second), 10*time.Second)); n != 0 {
		t.Fatalf("a kept job expired again within the timeout: %d", n)
	}
	if n := len(b.expired(t0.Add(20*time.Second), 10*time.Second)); n != 1 {
		t.Fatalf("a kept job did not expire a timeout later: %d", n)
	}
	ack(b.receive(ledgerEvent{Kind: ledgerUpdate, HubID: "a", Jobs: jobsNamed("j2")}, &countingAck{}, t0))
	b.reset(2)
	if len(b.jobs) != 0 || b.session != 2 || acc.acked() {
		t.Fatalf("after reset: %d jobs, session %d, acked %v; want none, 2, false", len(b.jobs), b.session, acc.acked())
	}
}

// TestLedgerBookTakeoverWait: a keeper that takes over receives the old
// events again, late; each job gets the full timeout from then, however
// old the events are.
func TestLedgerBookTakeoverWait(t *testing.T) {
	b := newLedgerBook(time.Minute)
	b.reset(7)
	published := time.Unix(1000, 0)
	takeover := published.Add(time.Hour)
	ack(b.receive(ledgerEvent{Kind: ledgerAlive, HubID: "a", Jobs: jobsNamed("j1")}, &countingAck{}, takeover))
	if n := len(b.expired(takeover.Add(9*time.Second), 10*time.Second)); n != 0 {
		t.Fatalf("%d jobs expired within the timeout after takeover, want 0", n)
	}
	if n := len(b.expired(takeover.Add(10*time.Second), 10*time.Second)); n != 1 {
		t.Fatalf("%d jobs expired at the timeout after takeover, want 1", n)
	}
}

// TestLedgerCheckEvery bounds the keeper's polling.
func TestLedgerCheckEvery(t *testing.T) {
	for timeout, want := range map[time.Duration]time.Duration{
		100 * time.Millisecond: 50 * time.Millisecond,
		2 * time.Second:        200 * time.Millisecond,
		time.Minute:            time.Second,
	} {
		if got := ledgerCheckEvery(timeout); got != want {
			t.Errorf("ledgerCheckEvery(%v) = %v, want %v", timeout, got, want)
		}
	}
}

// crash stops th as a killed process would: its broker client goes
// first, so it publishes nothing more (no lost report, no done event).
func (th *testHub) crash(t *testing.T) {
	_ = th.rc.Shutdown(t.Context())
	th.stop(t, time.Second)
}

// ledgerTimings are short ledger timings for the tests: a long grace, so
// that only the ledger can report the job within the test.
func ledgerTimings(c *Config) {
	c.LostWorkerGrace = time.Minute
	c.LedgerRenewInterval = 200 * time.Millisecond
	c.LedgerTimeout = 2 * time.Second
}

// acceptOrphan has a worker on h accept a job, waits until its delivery is
// acked (so the accepted event is confirmed), and kills the worker.
func acceptOrphan(t *testing.T, e *env, h *testHub, id string) {
	t.Helper()
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w-" + id}, false)
	e.publish(validJob(id))
	if got := w.expectRunJob().GetJobId(); got != id {
		t.Fatalf("RunJob for %s, want %s", got, id)
	}
	before := h.dispatcher.ledger.confirmedAccepts.Load()
	w.accept(id)
	eventually(t, 10*time.Second, "accepted event confirmed", func() bool { return h.dispatcher.ledger.confirmedAccepts.Load() > before })
	w.kill()
	eventually(t, 10*time.Second, "job orphaned", func() bool { return h.jobState(id) == jobOrphaned })
}

// expectLedgerLost waits for id's status and checks it is the ledger's
// lost report, the only status.
func expectLedgerLost(t *testing.T, e *env, id string) {
	t.Helper()
	st := e.waitStatus(id)[id]
	if st.GetSuccess() || !strings.Contains(st.GetError(), "stopped renewing") || st.GetWorkerId() != "w-"+id {
		t.Fatalf("status %+v; want a failure from the ledger naming worker w-%s", st, id)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(e.cp.Statuses(id)); n != 1 {
		t.Errorf("%d statuses for %s, want 1", n, id)
	}
}

// TestLedgerReportsOrphanOfCrashedHub: the hub that dispatched a job dies
// inside the job's grace period and its worker never returns; the other
// hub (the keeper, or the next one) reports the job lost.
func TestLedgerReportsOrphanOfCrashedHub(t *testing.T) {
	e := newEnv(t)
	a := e.startHub(ledgerTimings)
	b := e.startHub(ledgerTimings)
	_ = b
	acceptOrphan(t, e, a, "ledger-crash-1")
	a.crash(t)
	expectLedgerLost(t, e, "ledger-crash-1")
	if len(e.cp.Bodies()) != 1 {
		t.Errorf("%d statuses in all, want 1 (none for unknown jobs)", len(e.cp.Bodies()))
	}
}

// TestLedgerSurvivesEveryHubRestarting: the only hub dies; a hub started
// later finds the job in the ledger queue and reports it.
func TestLedgerSurvivesEveryHubRestarting(t *testing.T) {
	e := newEnv(t)
	a := e.startHub(ledgerTimings)
	acceptOrphan(t, e, a, "ledger-restart-1")
	a.crash(t)
	e.startHub(ledgerTimings)
	expectLedgerLost(t, e, "ledger-restart-1")
}

// TestLedgerFinishedJobNotReported: a job that finished normally is never
// reported lost by the ledger, however long one waits past its timeout,
// and every event about it was acked (none is left once the hubs stop).
func TestLedgerFinishedJobNotReported(t *testing.T) {
	e := newEnv(t)
	a := e.startHub(ledgerTimings)
	b := e.startHub(ledgerTimings)
	w := dialWorker(t, a.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w-fin"}, false)
	const id = "ledger-finished-1"
	e.publish(validJob(id))
	w.expectRunJob()
	w.accept(id)
	time.Sleep(600 * time.Millisecond) // a few alive events
	w.result(id, true)
	w.expectResultAck(id)
	if st := e.waitStatus(id)[id]; !st.GetSuccess() {
		t.Fatalf("status %+v, want success", st)
	}
	time.Sleep(3 * time.Second) // past the ledger timeout
	if n := len(e.cp.Statuses(id)); n != 1 {
		t.Fatalf("%d statuses for a finished job, want 1", n)
	}
	w.kill()
	a.stop(t, 2*time.Second)
	b.stop(t, 2*time.Second)
	if n := e.depth(e.execQ + rabbit.LedgerSuffix); n != 0 {
		t.Fatalf("%d ledger events left after the job finished and the hubs stopped, want 0", n)
	}
}
