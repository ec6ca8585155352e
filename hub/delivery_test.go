package hub

import (
	"context"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/rabbit"
)

// docs/protocol.md#acknowledging-a-job: the delivery stays unacked until JobAccepted. A hub that
// stops before acceptance gives the message back; after acceptance it is
// gone from the queue for good.
func TestAckOnlyAfterAccept(t *testing.T) {
	e := newEnv(t)
	a := e.startHub(nil)
	w := dialWorker(t, a.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1"}, false)
	e.publish(validJob("job-1"))
	if got := w.expectRunJob().GetJobId(); got != "job-1" {
		t.Fatalf("RunJob job id = %q, want job-1", got)
	}
	if got := a.jobState("job-1"); got != jobOffered {
		t.Fatalf("job state before accept = %v, want OFFERED", got)
	}
	if got := e.depth(e.execQ); got != 0 {
		t.Fatalf("ready messages while offered = %d, want 0 (held unacked)", got)
	}
	w.kill()
	a.stop(t, 500*time.Millisecond) // no acceptance: the message must come back
	eventually(t, 10*time.Second, "message requeued after hub A stopped", func() bool { return e.depth(e.execQ) == 1 })

	b := e.startHub(nil)
	w2 := dialWorker(t, b.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w2"}, false)
	if got := w2.expectRunJob().GetJobId(); got != "job-1" {
		t.Fatalf("RunJob on hub B = %q, want job-1", got)
	}
	w2.accept("job-1")
	eventually(t, 5*time.Second, "job running on hub B", func() bool { return b.jobState("job-1") == jobRunning })
	if got := counterValue(b.metrics.dispatched); got != 1 {
		t.Errorf("dispatched = %v, want 1", got)
	}
	w2.result("job-1", true)
	w2.expectResultAck("job-1")
	got := e.waitStatus("job-1")["job-1"]
	if !got.GetSuccess() || got.GetWorkerId() != "w2" {
		t.Errorf("status = %v, want success from w2", got)
	}
	b.stop(t, 2*time.Second)
	if got := e.depth(e.execQ); got != 0 {
		t.Errorf("ready messages after accepted job and hub stop = %d, want 0 (acked)", got)
	}
}

// docs/protocol.md#results: hub A dies mid-job; the worker reconnects to hub B with the
// job still running and later its result; the status arrives, no loss.
// A result held across the restart (unacked_results) is published too.
func TestHubRestartMidJob(t *testing.T) {
	e := newEnv(t)
	a := e.startHub(nil)
	w := dialWorker(t, a.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1", Slots: 2}, false)
	e.publish(validJob("job-run"), validJob("job-done"))
	for range 2 {
		w.accept(w.expectRunJob().GetJobId())
	}
	eventually(t, 5*time.Second, "both jobs running", func() bool {
		return a.jobState("job-run") == jobRunning && a.jobState("job-done") == jobRunning
	})
	a.stop(t, 300*time.Millisecond) // drain gives up: jobs still run
	w.kill()

	b := e.startHub(func(c *Config) { c.LostWorkerGrace = 500 * time.Millisecond })
	held := &blacktreev1.JobResult{Response: &blacktreev1.JobResponse{JobId: "job-done", Success: true, ImageUrl: "r/i:1"},
		DispatchTicket: ticketOf("w1", "job-done")}
	w2 := dialWorker(t, b.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1", Slots: 2,
		RunningJobs:    []*blacktreev1.RunningJob{{JobId: "job-run", DispatchTicket: ticketOf("w1", "job-run")}},
		UnackedResults: []*blacktreev1.JobResult{held}}, false)
	w2.expectResultAck("job-done")
	if got := b.jobState("job-run"); got != jobRunning {
		t.Fatalf("adopted job state = %v, want RUNNING", got)
	}
	w2.result("job-run", true)
	w2.expectResultAck("job-run")
	got := e.waitStatus("job-run", "job-done")
	for id, s := range got {
		if !s.GetSuccess() {
			t.Errorf("status %s = %v, want success", id, s)
		}
	}
	if got := e.depth(e.execQ); got != 0 {
		t.Errorf("ready messages = %d, want 0", got)
	}
}

// docs/protocol.md#lost-workers: a busy worker that vanishes is reported lost after the
// grace period, and not before.
func TestLostWorkerReportedAfterGrace(t *testing.T) {
	const grace = 1500 * time.Millisecond
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.LostWorkerGrace = grace })
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "victim"}, false)
	e.publish(validJob("job-lost"))
	w.accept(w.expectRunJob().GetJobId())
	eventually(t, 5*time.Second, "job running", func() bool { return h.jobState("job-lost") == jobRunning })
	killed := time.Now()
	w.kill()
	eventually(t, 5*time.Second, "job orphaned", func() bool { return h.jobState("job-lost") == jobOrphaned })
	// Not before the grace period: nothing published in the first part of it.
	early := time.NewTimer(grace / 2)
	<-early.C
	if s := e.cp.Statuses("job-lost"); len(s) != 0 {
		t.Fatalf("status %v published %v after the worker died, want none before %v", s, time.Since(killed), grace)
	}
	got := e.waitStatus("job-lost")["job-lost"]
	if since := time.Since(killed); since < grace {
		t.Errorf("lost report after %v, want >= %v", since, grace)
	}
	if got.GetSuccess() || !strings.HasPrefix(got.GetError(), "worker victim lost: ") || got.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_DISPATCH {
		t.Errorf("lost status = %v, want failed, error \"worker victim lost: ...\", stage DISPATCH", got)
	}
	if got := counterValue(h.metrics.lost); got != 1 {
		t.Errorf("lost metric = %v, want 1", got)
	}
}

// A worker that comes back within the grace period keeps its job: no lost
// report, its result is published.
func TestLostWorkerReturnsWithinGrace(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.LostWorkerGrace = 3 * time.Second })
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "flaky"}, false)
	e.publish(validJob("job-back"))
	w.accept(w.expectRunJob().GetJobId())
	eventually(t, 5*time.Second, "job running", func() bool { return h.jobState("job-back") == jobRunning })
	w.kill()
	eventually(t, 5*time.Second, "job orphaned", func() bool { return h.jobState("job-back") == jobOrphaned })
	w2 := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "flaky", RunningJobs: []*blacktreev1.RunningJob{{JobId: "job-back"}}}, false)
	// Registered is queued before the hub adopts the session's jobs (it
	// must be the session's first frame), so the adoption may land just after
	// the worker reads it.
	eventually(t, 5*time.Second, "job running again after re-register", func() bool { return h.jobState("job-back") == jobRunning })
	wait := time.NewTimer(3500 * time.Millisecond) // past the grace period
	<-wait.C
	if s := e.cp.Statuses("job-back"); len(s) != 0 {
		t.Fatalf("statuses = %v, want none (worker came back)", s)
	}
	w2.result("job-back", true)
	if got := e.waitStatus("job-back")["job-back"]; !got.GetSuccess() {
		t.Errorf("status = %v, want success", got)
	}
}

// docs/protocol.md#invalid-requests: invalid messages never block the queue: unreadable ones are
// dead-lettered, readable ones get a failed status; the next job runs.
func TestInvalidMessages(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1"}, true)
	ctx := t.Context()
	if err := e.cp.PublishRaw(ctx, []byte("this is not json {"), "raw-1"); err != nil {
		t.Fatal(err)
	}
	if err := e.cp.PublishRaw(ctx, []byte(`{"jobId":"bad-1","repoUrl":"file:///etc/passwd","imageName":"x:1","githubToken":"ghp_secret_token_value"}`), "bad-1"); err != nil {
		t.Fatal(err)
	}
	e.publish(validJob("good-1"))
	got := e.waitStatus("bad-1", "good-1")
	if s := got["bad-1"]; s.GetSuccess() || s.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_VALIDATE || !strings.Contains(s.GetError(), "repoUrl") {
		t.Errorf("status bad-1 = %v, want failed at VALIDATE naming repoUrl", s)
	}
	if s := got["good-1"]; !s.GetSuccess() {
		t.Errorf("status good-1 = %v, want success", s)
	}
	eventually(t, 5*time.Second, "unreadable message dead-lettered", func() bool { return e.depth(e.execQ+rabbit.DeadLetterSuffix) == 1 })
	for _, b := range e.cp.Bodies() {
		if strings.Contains(string(b), "ghp_secret_token_value") {
			t.Errorf("status body %s carries the token", b)
		}
	}
	if got := counterValue(h.metrics.invalid); got != 2 {
		t.Errorf("invalid metric = %v, want 2", got)
	}
}

// docs/protocol.md#prefetch-and-holding: with no worker the hub holds at most prefetch deliveries and
// requeues them after HoldTimeout; a worker that arrives runs them all. The
// fixed window works the same on classic and quorum queues.
func TestHeldDeliveriesBounded(t *testing.T) {
	for _, queueType := range []string{rabbit.QueueTypeClassic, rabbit.QueueTypeQuorum} {
		t.Run(queueType, func(t *testing.T) {
			const prefetch = 3
			e := newEnv(t)
			h := e.startHub(func(c *Config) { c.HoldTimeout = 400 * time.Millisecond },
				func(r *rabbit.Config) { r.Prefetch, r.QueueType = prefetch, queueType })
			var ids []string
			for i := range 8 {
				id := "held-" + string(rune('a'+i))
				ids = append(ids, id)
				e.publish(validJob(id))
			}
			eventually(t, 5*time.Second, "deliveries held", func() bool { return h.dispatcher.heldCount() > 0 })
			eventually(t, 5*time.Second, "held deliveries requeued after HoldTimeout", func() bool {
				return counterValue(h.metrics.requeued) >= prefetch
			})
			for range 20 {
				if n := h.dispatcher.heldCount(); n > prefetch {
					t.Fatalf("held = %d, want <= prefetch %d", n, prefetch)
				}
				if n := e.depth(e.execQ); n < len(ids)-prefetch {
					t.Fatalf("ready messages = %d, want >= %d (the rest wait in RabbitMQ)", n, len(ids)-prefetch)
				}
			}
			dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "late", Slots: 2}, true)
			e.waitStatus(ids...)
			for _, id := range ids {
				if n := len(e.cp.Statuses(id)); n != 1 {
					t.Errorf("statuses for %s = %d, want 1", id, n)
				}
			}
		})
	}
}

// A delivery whose jobId is already in flight is acked and dropped; the
// in-flight job answers it once.
func TestDuplicateJobID(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1", Slots: 2}, false)
	e.publish(validJob("dup-1"))
	w.accept(w.expectRunJob().GetJobId())
	e.publish(validJob("dup-1"))
	eventually(t, 5*time.Second, "duplicate counted", func() bool { return counterValue(h.metrics.duplicate) == 1 })
	w.result("dup-1", true)
	w.expectResultAck("dup-1")
	e.waitStatus("dup-1")
	if got := e.depth(e.execQ); got != 0 {
		t.Errorf("ready messages = %d, want 0 (duplicate acked)", got)
	}
	if n := len(e.cp.Statuses("dup-1")); n != 1 {
		t.Errorf("statuses = %d, want 1", n)
	}
}

// A hub that stops before an orphan's grace period ends reports the job
// lost at once instead of forgetting it: nobody else knows about it.
func TestOrphanReportedWhenHubStops(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.LostWorkerGrace = time.Hour; c.DrainTimeout = 500 * time.Millisecond })
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "gone"}, false)
	e.publish(validJob("job-orphan-stop"))
	w.accept(w.expectRunJob().GetJobId())
	eventually(t, 5*time.Second, "job running", func() bool { return h.jobState("job-orphan-stop") == jobRunning })
	w.kill()
	eventually(t, 5*time.Second, "job orphaned", func() bool { return h.jobState("job-orphan-stop") == jobOrphaned })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = h.Shutdown(ctx) // drain times out: the orphan is still within its grace
	got := e.waitStatus("job-orphan-stop")["job-orphan-stop"]
	if got.GetSuccess() || !strings.Contains(got.GetError(), "hub stopped before the worker came back") {
		t.Errorf("status = %v, want a lost report naming the hub stop", got)
	}
}
