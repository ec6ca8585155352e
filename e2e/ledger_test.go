package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// ledgerHubArgs: the grace given, a short renew interval, and debug logs
// (the hub logs each job confirmed in the orphan ledger).
func ledgerHubArgs(grace time.Duration) []string {
	return []string{"--lost-worker-grace", grace.String(), "--ledger-renew-interval", "500ms", "--log-level", "debug"}
}

// orphanOnHub has a worker connected only to h take a long job, waits
// until the job is in the orphan ledger, kills the worker -9 and waits
// until h holds the job orphaned (inside its grace period).
func orphanOnHub(t *testing.T, e *env, h *hubProc, id string) {
	t.Helper()
	w := e.startWorker("victim-"+id, []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "10m")
	e.waitWorkers(h, 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.publish(ctx, id)
	waitAccepted(t, e, h, w, id)
	if err := h.WaitOutput(ctx, `accepted job in the ledger: job_id=`+id); err != nil {
		t.Fatalf("the hub never confirmed %s in the ledger: %v%s", id, err, e.diagnose(h))
	}
	w.Kill()
	if err := waitJobState(ctx, e, h, id, blacktreev1.JobState_JOB_STATE_ORPHANED); err != nil {
		t.Fatalf("hub never held %s orphaned: %v%s", id, err, e.diagnose(h))
	}
}

// expectOneLedgerLost waits (generously) for id's status, checks it is
// the ledger's lost report and that, a little later, it is the only
// status of the run.
func expectOneLedgerLost(t *testing.T, e *env, id string, killed time.Time, diagnose func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	got, err := e.cp.WaitFor(ctx, id)
	if err != nil {
		t.Fatalf("no status for %s after its hub died: %v%s", id, err, diagnose())
	}
	took := time.Since(killed)
	r := got[id]
	if r.GetSuccess() || !strings.Contains(r.GetError(), "stopped renewing") {
		t.Errorf("status = %v, want a failure from the orphan ledger", r)
	}
	time.Sleep(2 * time.Second)
	if n := len(e.cp.Statuses(id)); n != 1 {
		t.Errorf("statuses for %s = %d, want 1", id, n)
	}
	if n := len(e.cp.Bodies()); n != 1 {
		t.Errorf("statuses in all = %d, want 1 (none for unknown jobs)", n)
	}
	record(t, "orphan reported lost by the ledger %s after its hub was killed", took.Round(time.Millisecond))
}

// TestLedgerOrphanOutlivesHub: two hubs on the same queues; a worker of
// hub A accepts a long job and is killed -9 for good; hub A is killed -9
// inside the job's grace period. Hub B still reports the job lost.
func TestLedgerOrphanOutlivesHub(t *testing.T) {
	const grace = 10 * time.Second
	e := newEnv(t, sharedAMQP)
	a := e.startHub(ledgerHubArgs(grace)...)
	b := e.startHub(ledgerHubArgs(grace)...)
	orphanOnHub(t, e, a, "ledger-orphan-1")
	a.Kill()
	expectOneLedgerLost(t, e, "ledger-orphan-1", time.Now(), func() string { return e.diagnose(b) })
}

// TestLedgerOrphanOutlivesEveryHub: both hubs are killed -9 inside the
// grace period; a hub started afterwards reports the job lost.
func TestLedgerOrphanOutlivesEveryHub(t *testing.T) {
	const grace = 5 * time.Second
	e := newEnv(t, sharedAMQP)
	a := e.startHub(ledgerHubArgs(grace)...)
	b := e.startHub(ledgerHubArgs(grace)...)
	orphanOnHub(t, e, a, "ledger-orphan-2")
	a.Kill()
	b.Kill()
	killed := time.Now()
	c := e.startHub(ledgerHubArgs(grace)...)
	expectOneLedgerLost(t, e, "ledger-orphan-2", killed, func() string { return e.diagnose(c) })
}
