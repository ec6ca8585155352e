package e2e

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
)

// TestDrainWaitRace (docs/protocol.md#draining): `btctl drain --wait` on
// one worker and SIGTERM on another while deliveries are in flight to
// both. Every published
// job gets exactly one successful status (a RunJob that reached the worker
// after its Drain was rejected and placed again at once, none lost or
// stuck), and drain --wait exits 0 only once the worker is fenced and
// idle: every job it ran had finished by then, and it runs none after.
func TestDrainWaitRace(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	procs := map[string]*cluster.Process{}
	for _, n := range []string{"drained", "terminated", "stays"} {
		procs[n] = e.startWorker(n, []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "50ms", "--slots", "2")
	}
	e.waitWorkers(h, 3, 30*time.Second)
	client, actx := e.admin(h)
	drainedID := e.workerID("drained")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	jobs := ids("drainrace", 300)
	e.publish(ctx, jobs...)
	// Drain once the fleet is busy: the hub has offers on their way to
	// both workers at every moment of the run.
	for answered(e, jobs) < 40 {
		select {
		case <-ctx.Done():
			t.Fatalf("fewer than 40 statuses before the deadline%s", e.diagnose(h))
		case <-time.After(20 * time.Millisecond): // polling the control plane's ledger
		}
	}
	// An autoscaler's other way: SIGTERM, on which the worker drains
	// itself while the hub may still be offering it jobs.
	if err := procs["terminated"].Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	drainStart := time.Now()
	cmd := exec.CommandContext(ctx, bins.Ctl, "drain", drainedID, "--wait", "--timeout", "90s",
		"--hub", h.GRPCAddr, "--insecure", "--admin-token-file", e.adminFile)
	out, err := cmd.CombinedOutput()
	drained := time.Now()
	if err != nil {
		t.Fatalf("btctl drain --wait = %v, want exit 0:\n%s%s", err, out, e.diagnose(h))
	}
	if !strings.Contains(string(out), "fenced and idle") {
		t.Errorf("btctl drain --wait output = %q, want it to say fenced and idle", out)
	}
	after, err := client.ListWorkers(actx, &blacktreev1.ListWorkersRequest{})
	if err != nil {
		t.Fatalf("ListWorkers() = %v", err)
	}
	for _, w := range after.GetWorkers() {
		if w.GetWorkerId() == drainedID && (!w.GetFenced() || len(w.GetRunningJobIds()) != 0) {
			t.Errorf("after drain --wait: worker fenced=%v running=%v, want fenced and none", w.GetFenced(), w.GetRunningJobIds())
		}
	}

	got, err := e.cp.WaitFor(ctx, jobs...)
	if err != nil {
		t.Fatalf("WaitFor() = %v%s", err, e.diagnose(h))
	}
	onDrained := 0
	for id, r := range got {
		if !r.GetSuccess() {
			t.Errorf("status %s = %v, want success", id, r)
		}
		if r.GetWorkerId() == drainedID {
			onDrained++
			if r.GetFinishedAt().AsTime().After(drained) {
				t.Errorf("job %s on the drained worker finished at %s, after drain --wait returned at %s", id, r.GetFinishedAt().AsTime(), drained)
			}
		}
	}
	select {
	case <-procs["terminated"].Done():
		if code := procs["terminated"].ExitCode(); code != 0 {
			t.Errorf("SIGTERMed worker exit = %d, want 0 (drained)", code)
		}
	case <-ctx.Done():
		t.Errorf("SIGTERMed worker did not exit")
	}
	l := e.cp.Ledger(jobs)
	if l.Lost != 0 || l.Duplicates != 0 || l.Unexpected != 0 {
		t.Errorf("Ledger() = %s, want every job answered exactly once", l)
	}
	rejects := strings.Count(h.Output(), "REJECT_REASON_DRAINING")
	record(t, "%s; drain --wait took %s; drained worker ran %d (0 after), %d DRAINING rejects placed again",
		l, drained.Sub(drainStart).Round(time.Millisecond), onDrained, rejects)
}

// answered counts the jobs of ids with a status.
func answered(e *env, jobs []string) int {
	n := 0
	for _, id := range jobs {
		if len(e.cp.Statuses(id)) > 0 {
			n++
		}
	}
	return n
}
