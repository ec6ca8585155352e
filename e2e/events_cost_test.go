package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestJobEventsCost drains the same backlog of noop jobs that print (two
// lines each) through a hub without and with --events-exchange, in turn,
// in one run, and records the wall times and their ratio. Every job must
// be answered once either way; the figure itself is only recorded.
func TestJobEventsCost(t *testing.T) {
	const jobs = 600
	drain := func(round int, events bool) time.Duration {
		e := newEnv(t, sharedAMQP)
		var extra []string
		if events {
			exchange := "e2e.events.cost." + randomHex(6)
			extra = []string{"--events-exchange", exchange}
			t.Cleanup(func() { deleteExchange(t, exchange) })
		}
		h := e.startHub(extra...)
		for _, n := range []string{"c1", "c2", "c3"} {
			e.startWorker(n, []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "20ms", "--noop-log-lines", "2", "--slots", "4")
		}
		e.waitWorkers(h, 3, 30*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		ids := ids(fmt.Sprintf("cost-%d-%v", round, events), jobs)
		start := time.Now()
		e.publish(ctx, ids...)
		if _, err := e.cp.WaitFor(ctx, ids...); err != nil {
			t.Fatalf("WaitFor() = %v", err)
		}
		took := time.Since(start)
		if l := e.cp.Ledger(ids); l.Lost != 0 || l.Duplicates != 0 {
			t.Fatalf("Ledger() = %s, want every job answered once", l)
		}
		for i := len(e.procs) - 1; i >= 0; i-- { // stopped again, harmlessly, at cleanup
			_ = e.procs[i].Stop(20 * time.Second)
		}
		return took
	}
	var off, on time.Duration
	for round := range 2 {
		off += drain(round, false)
		on += drain(round, true)
	}
	record(t, "%d printing noop jobs x2 rounds, 3 workers x 4 slots: events off %s, on %s, on/off %.2f",
		jobs, off.Round(time.Millisecond), on.Round(time.Millisecond), float64(on)/float64(off))
}
