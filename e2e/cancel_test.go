package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// cancelSettle is how long a test waits after a job's status to see that
// no second one follows.
const cancelSettle = 3 * time.Second

// expectOneCancelled waits (generously) for id's status, checks that it
// is the cancelled one with reason, and that, cancelSettle later, it is
// still id's only status. It returns when the status arrived.
func expectOneCancelled(ctx context.Context, t *testing.T, e *env, id, reason string) time.Time {
	t.Helper()
	got, err := e.cp.WaitFor(ctx, id)
	if err != nil {
		t.Fatalf("no status for %s: %v", id, err)
	}
	at := time.Now()
	r := got[id]
	if r.GetSuccess() || r.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_CANCELLED || r.GetError() != "cancelled: "+reason {
		t.Fatalf("status of %s = success %v, stage %v, error %q; want failed, CANCELLED, %q", id, r.GetSuccess(), r.GetFailedStage(), r.GetError(), "cancelled: "+reason)
	}
	time.Sleep(cancelSettle) // waiting for a status that must not come
	if n := len(e.cp.Statuses(id)); n != 1 {
		t.Fatalf("%s has %d statuses, want exactly one: %v", id, n, e.cp.Statuses(id))
	}
	return at
}

// TestCancelRunningJob: a cancel on the cancel queue stops a running noop
// job on its worker, which reports it cancelled once; a second cancel of
// the finished job yields no second status.
func TestCancelRunningJob(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	w := e.startWorker("runner", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "10m", "--cancel-grace", "5s")
	e.waitWorkers(h, 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const id = "cancel-running"
	e.publish(ctx, id)
	waitAccepted(t, e, h, w, id)
	sent := time.Now()
	if err := e.cp.PublishCancel(ctx, e.cancelQ(), id, "no longer wanted"); err != nil {
		t.Fatalf("PublishCancel() = %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second+20*time.Second) // the grace, plus a generous margin
	defer wcancel()
	at := expectOneCancelled(wctx, t, e, id, "no longer wanted")
	if err := e.cp.PublishCancel(ctx, e.cancelQ(), id, "again"); err != nil {
		t.Fatalf("PublishCancel() = %v", err)
	}
	time.Sleep(cancelSettle) // waiting for a status that must not come
	if n := len(e.cp.Statuses(id)); n != 1 {
		t.Fatalf("a cancel of the finished job %s gave it %d statuses, want one", id, n)
	}
	record(t, "cancel of a running noop job: status %s after the cancel was published", at.Sub(sent).Round(time.Millisecond))
}

// TestCancelQueuedJobNeverRuns: a job still in the execute queue (no
// worker, so the hub takes none) is cancelled; a worker started afterwards
// never runs it, and its one status is the cancelled one.
func TestCancelQueuedJobNeverRuns(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const id = "cancel-queued"
	e.publish(ctx, id)
	if err := e.cp.PublishCancel(ctx, e.cancelQ(), id, "queued too long"); err != nil {
		t.Fatalf("PublishCancel() = %v", err)
	}
	if err := h.WaitOutput(ctx, "remembering it: job_id="+id); err != nil {
		t.Fatalf("the hub never took the cancel of %s: %v%s", id, err, e.diagnose(h))
	}
	w := e.startWorker("late", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "10ms")
	e.waitWorkers(h, 1, 30*time.Second)
	expectOneCancelled(ctx, t, e, id, "queued too long")
	if strings.Contains(w.Output(), id) {
		t.Fatalf("the worker saw the cancelled job %s:\n%s", id, tail(w.Output(), 2000))
	}
	// The worker runs jobs: a job published now succeeds.
	e.publish(ctx, "after-cancel")
	got, err := e.cp.WaitFor(ctx, "after-cancel")
	if err != nil || !got["after-cancel"].GetSuccess() {
		t.Fatalf("a job after the cancel: %v, %v", got["after-cancel"], err)
	}
}

// TestCancelReachesHubHoldingJob: hub B runs the job on its worker and
// does not consume the cancel queue; hub A consumes the cancel and passes
// it on, and B's worker stops the job.
func TestCancelReachesHubHoldingJob(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	hubA := e.startHub()
	hubB := e.startHub("--cancel-queue", "")
	w := e.startWorker("on-b", []string{hubB.GRPCAddr}, "--executor", "noop", "--noop-delay", "10m", "--cancel-grace", "5s")
	e.waitWorkers(hubB, 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const id = "cancel-elsewhere"
	e.publish(ctx, id)
	waitAccepted(t, e, hubB, w, id)
	if err := e.cp.PublishCancel(ctx, e.cancelQ(), id, "via hub a"); err != nil {
		t.Fatalf("PublishCancel() = %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second+20*time.Second)
	defer wcancel()
	expectOneCancelled(wctx, t, e, id, "via hub a")
	if !strings.Contains(hubA.Output(), "job_id="+id) {
		t.Errorf("hub A never logged the cancel of %s: it did not come through A", id)
	}
}

// TestCancelByAdmin: AdminService.CancelJob takes the cancel queue's path:
// a running job is stopped by its worker and reported cancelled once.
func TestCancelByAdmin(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	w := e.startWorker("runner", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "10m", "--cancel-grace", "5s")
	e.waitWorkers(h, 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const id = "cancel-admin"
	e.publish(ctx, id)
	waitAccepted(t, e, h, w, id)
	client, actx := e.admin(h)
	resp, err := client.CancelJob(actx, &blacktreev1.CancelJobRequest{JobId: id, Reason: "by admin"})
	if err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	if resp.GetOutcome() != blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_SENT_TO_WORKER || !resp.GetAnnounced() {
		t.Fatalf("CancelJob() = %v, want sent to the worker and announced", resp)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second+20*time.Second)
	defer wcancel()
	expectOneCancelled(wctx, t, e, id, "by admin")
}
