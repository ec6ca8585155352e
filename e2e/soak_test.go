package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// TestSoak pushes 20,000 jobs through noop workers while workers join and
// leave (SIGTERM drain), and ends with an exact ledger.
func TestSoak(t *testing.T) {
	const total = 20000
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	var workers []*cluster.Process
	for i := 0; i < 3; i++ {
		workers = append(workers, e.startWorker(fmt.Sprintf("soak-%d", i), []string{h.GRPCAddr}, "--executor", "noop", "--slots", "8"))
	}
	e.waitWorkers(h, 3, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	jobs := ids("soak", total)
	start := time.Now()
	e.publish(ctx, jobs...)
	published := time.Since(start)
	churn := 0
	for q := 1; q <= 3; q++ {
		if _, err := e.cp.WaitFor(ctx, jobs[:q*total/4]...); err != nil {
			t.Fatalf("WaitFor(%d) = %v", q*total/4, err)
		}
		// One worker leaves gracefully, a new one joins.
		old := workers[0]
		workers = workers[1:]
		if err := old.Stop(60 * time.Second); err != nil {
			t.Errorf("draining %s: %v", old.Name, err)
		}
		workers = append(workers, e.startWorker(fmt.Sprintf("soak-new-%d", q), []string{h.GRPCAddr}, "--executor", "noop", "--slots", "8"))
		churn++
	}
	if _, err := e.cp.WaitFor(ctx, jobs...); err != nil {
		t.Fatalf("WaitFor(all) = %v", err)
	}
	elapsed := time.Since(start)
	l := e.cp.Ledger(jobs)
	if l.Lost != 0 || l.Unexpected != 0 || l.Undecodable != 0 {
		t.Errorf("Ledger() = %s, want lost=0 unexpected=0 undecodable=0", l)
	}
	failed := 0
	for _, id := range jobs {
		if s := e.cp.Statuses(id); len(s) > 0 && !s[0].GetSuccess() {
			failed++
		}
	}
	if failed != 0 {
		t.Errorf("%d jobs failed, want 0", failed)
	}
	record(t, "%d jobs, %d worker swaps: %s, failed=%d, %.0f jobs/s (publish took %s)",
		total, churn, l, failed, float64(total)/elapsed.Seconds(), published.Round(time.Millisecond))
	if l.Duplicates > 0 {
		t.Logf("duplicates %v: at-least-once status delivery, docs/protocol.md#duplicates", l.DuplicateIDs[:min(len(l.DuplicateIDs), 10)])
	}
}
