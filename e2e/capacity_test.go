package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// TestNoWorkerHoldsNothing (docs/design/consumption.md): a hub with no
// worker takes no delivery; the broker keeps every job ready for a hub
// that can run it. Once a worker connects, all of them run.
func TestNoWorkerHoldsNothing(t *testing.T) {
	const jobs = 50
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	published := ids("idle", jobs)
	e.publish(ctx, published...)
	// The old hub took its prefetch at once: give it longer than that
	// takes, then look several times.
	var ready, unacked int
	for i := range 5 {
		time.Sleep(300 * time.Millisecond)
		var err error
		if ready, unacked, err = cluster.QueueCounts(e.execQ); err != nil {
			t.Fatalf("QueueCounts() = %v", err)
		}
		if unacked != 0 || ready != jobs {
			t.Fatalf("look %d: messages_ready=%d messages_unacknowledged=%d with no worker, want %d and 0%s", i, ready, unacked, jobs, e.diagnose(h))
		}
	}
	e.startWorker("late", []string{h.GRPCAddr}, "--executor", "noop", "--slots", "4")
	if _, err := e.cp.WaitFor(ctx, published...); err != nil {
		t.Fatalf("WaitFor() = %v%s", err, e.diagnose(h))
	}
	l := e.cp.Ledger(published)
	if l.Lost != 0 {
		t.Errorf("Ledger() = %s, want lost=0", l)
	}
	record(t, "no worker: hub held %d of %d deliveries (ready=%d); a worker then ran them: %s", unacked, jobs, ready, l)
}

// TestTwoHubsOneEmpty: two hubs share the queue, only hub A has workers.
// Under a steady 50 jobs/s hub B, which has no free slot, takes no job, so
// none waits out B's hold timeout: p95 publish → status stays under the
// 500 ms target (a target, so asserted).
func TestTwoHubsOneEmpty(t *testing.T) {
	const (
		rate     = 50
		duration = 20 * time.Second
		target   = 500 * time.Millisecond
	)
	e := newEnv(t, sharedAMQP)
	a := e.startHub()
	b := e.startHub()
	for _, n := range []string{"a1", "a2"} {
		e.startWorker(n, []string{a.GRPCAddr}, "--executor", "noop", "--noop-delay", "50ms", "--slots", "4")
	}
	e.waitWorkers(a, 2, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Statuses are awaited in publish order, so one that overtakes an
	// earlier job's counts from when the earlier one arrived: the
	// latencies are upper bounds.
	type sent struct {
		id string
		at time.Time
	}
	published := make(chan sent, rate*int(duration/time.Second)+1)
	var latencies []time.Duration
	var waitErr error
	var watcher sync.WaitGroup
	watcher.Go(func() {
		for s := range published {
			if _, err := e.cp.WaitFor(ctx, s.id); err != nil {
				waitErr = err
				return
			}
			latencies = append(latencies, time.Since(s.at))
		}
	})
	// Job i goes out at start + i/rate; one published late (a slow
	// confirm) is followed by the next at once, so the rate holds.
	var all []string
	start := time.Now()
	for i := range rate * int(duration/time.Second) {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
		id := fmt.Sprintf("steady-%05d", i)
		published <- sent{id: id, at: time.Now()}
		e.publish(ctx, id)
		all = append(all, id)
	}
	offered := float64(len(all)) / time.Since(start).Seconds()
	close(published)
	watcher.Wait()
	if waitErr != nil {
		t.Fatalf("WaitFor() = %v%s", waitErr, e.diagnose(b))
	}
	l := e.cp.Ledger(all)
	if l.Lost != 0 {
		t.Errorf("Ledger() = %s, want lost=0", l)
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		return latencies[int(p*float64(len(latencies)-1))].Round(time.Millisecond)
	}
	requeuedB := "?"
	for _, line := range strings.Split(metricsText(t, b), "\n") {
		if v, ok := strings.CutPrefix(line, "blacktree_jobs_requeued_total "); ok {
			requeuedB = v
		}
	}
	if p95 := pct(0.95); p95 >= target {
		t.Errorf("p95 publish → status = %s, want < %s%s", p95, target, e.diagnose(b))
	}
	record(t, "2 hubs, B with no worker, %.0f jobs/s for %s: publish → status p50 %s, p95 %s (target < %s), max %s; B requeued %s; %s",
		offered, duration, pct(0.5), pct(0.95), target, pct(1), requeuedB, l)
}
