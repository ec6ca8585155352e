package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
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

// TestWorkerMovesHubs: a busy worker loses its way to hub A while A stays
// up, and registers with hub B with its job still running. B announces the
// adoption, A drops the job instead of reporting it lost after its grace
// period, and the control plane gets one status: the real result.
func TestWorkerMovesHubs(t *testing.T) {
	const grace = 4 * time.Second
	e := newEnv(t, sharedAMQP)
	a := e.startHub("--lost-worker-grace", grace.String())
	proxy, err := cluster.StartProxy(a.GRPCAddr)
	if err != nil {
		t.Fatalf("StartProxy() = %v", err)
	}
	t.Cleanup(proxy.Close)
	// B's addresses are fixed now, for the worker's hub list; B itself
	// starts once the job runs on A, so that it cannot take the delivery.
	bGRPC, err := cluster.FreeAddr()
	if err != nil {
		t.Fatalf("FreeAddr() = %v", err)
	}
	bHTTP, err := cluster.FreeAddr()
	if err != nil {
		t.Fatalf("FreeAddr() = %v", err)
	}
	w := e.startWorker("mover", []string{proxy.Addr, bGRPC}, "--executor", "noop", "--noop-delay", "10s")
	e.waitWorkers(a, 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.publish(ctx, "move-1")
	waitAccepted(t, e, a, w, "move-1")
	b := e.startHubAt(bGRPC, bHTTP, "--lost-worker-grace", grace.String())

	proxy.Close() // A stays up, but the worker can no longer reach it
	cut := time.Now()
	e.waitWorkers(b, 1, 30*time.Second)
	moved := time.Since(cut)
	got, err := e.cp.WaitFor(ctx, "move-1")
	if err != nil {
		t.Fatalf("WaitFor() = %v%s", err, e.diagnose(b))
	}
	if r := got["move-1"]; !r.GetSuccess() {
		t.Errorf("first status = %v, want the worker's success (not A's lost report)", r)
	}
	// Past A's grace period, with a margin: A must have stayed silent.
	if wait := time.Until(cut.Add(grace + 2*time.Second)); wait > 0 {
		past := time.NewTimer(wait)
		<-past.C
	}
	if n := len(e.cp.Statuses("move-1")); n != 1 {
		t.Errorf("statuses = %d, want 1%s", n, e.diagnose(a))
	}
	if !strings.Contains(a.Output(), "job adopted by another hub") {
		t.Errorf("hub A's log lacks the adoption it was told of%s", e.diagnose(a))
	}
	record(t, "worker moved from hub A (still up) to B in %s mid-job: statuses=%d, A dropped the job on B's announcement",
		moved.Round(time.Millisecond), len(e.cp.Statuses("move-1")))
}
