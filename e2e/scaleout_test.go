package e2e

import (
	"context"
	"testing"
	"time"
)

// TestTwoHubsOneKilled: two hubs share a broker; workers spread over both
// with a list of hub addresses. One hub is killed mid-stream: its workers
// move to the other and every job is answered.
func TestTwoHubsOneKilled(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	a := e.startHub()
	b := e.startHub()
	for _, n := range []string{"a1", "a2"} {
		e.startWorker(n, []string{a.GRPCAddr, b.GRPCAddr}, "--executor", "noop", "--noop-delay", "10ms", "--slots", "2")
	}
	for _, n := range []string{"b1", "b2"} {
		e.startWorker(n, []string{b.GRPCAddr, a.GRPCAddr}, "--executor", "noop", "--noop-delay", "10ms", "--slots", "2")
	}
	e.waitWorkers(a, 2, 30*time.Second)
	e.waitWorkers(b, 2, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	jobs := ids("scale", 400)
	e.publish(ctx, jobs...)
	if _, err := e.cp.WaitFor(ctx, jobs[:100]...); err != nil {
		t.Fatalf("WaitFor(first 100) = %v", err)
	}
	a.Kill()
	killed := time.Now()
	e.waitWorkers(b, 4, 60*time.Second)
	moved := time.Since(killed)
	if _, err := e.cp.WaitFor(ctx, jobs...); err != nil {
		t.Fatalf("WaitFor(all) = %v", err)
	}
	l := e.cp.Ledger(jobs)
	if l.Lost != 0 {
		t.Errorf("Ledger() = %s, want lost=0", l)
	}
	record(t, "2 hubs, 4 workers, hub A killed: workers on B after %s; %s", moved.Round(time.Millisecond), l)
}
