package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestWorkerRestartReportsInterruptedJob: kill -9 of a busy worker, then a
// restart on the same --state-dir: its job journal names the job it was
// running, and the job is reported interrupted at once, long before the
// hub's lost-worker grace (docs/design/worker-journal.md).
func TestWorkerRestartReportsInterruptedJob(t *testing.T) {
	const (
		grace = 2 * time.Minute
		bound = 60 * time.Second // generous fault-detection bound, well under grace
	)
	e := newEnv(t, sharedAMQP)
	h := e.startHub("--lost-worker-grace", grace.String())
	args := []string{"--executor", "noop", "--noop-delay", "10m"}
	w := e.startWorker("journalled", []string{h.GRPCAddr}, args...)
	e.waitWorkers(h, 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.publish(ctx, "journal-1")
	waitAccepted(t, e, h, w, "journal-1")

	w.Kill()
	killed := time.Now()
	w2 := e.startWorker("journalled", []string{h.GRPCAddr}, args...)
	waitCtx, waitCancel := context.WithTimeout(ctx, bound)
	defer waitCancel()
	got, err := e.cp.WaitFor(waitCtx, "journal-1")
	if err != nil {
		t.Fatalf("no status within %s of the kill (grace %s): %v%s\nrestarted worker:\n%s", bound, grace, err, e.diagnose(h), w2.Output())
	}
	took := time.Since(killed)
	r := got["journal-1"]
	if r.GetSuccess() || !strings.Contains(r.GetError(), "restarted: job interrupted") || strings.Contains(r.GetError(), "lost") {
		t.Errorf("status = %v, want the restarted worker's interrupted report, not a lost one", r)
	}
	// The hub publishes it once: no lost report follows for the job.
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	if n := len(e.cp.Statuses("journal-1")); n != 1 {
		t.Errorf("statuses for the job = %d, want 1", n)
	}
	record(t, "interrupted status %s after kill -9 and restart (grace %s)", took.Round(time.Millisecond), grace)
}
