package hub

import (
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func rejectMsg(id string, reason blacktreev1.RejectReason) *blacktreev1.WorkerMessage {
	return &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobRejected{JobRejected: &blacktreev1.JobRejected{JobId: id, Reason: reason}}}
}

func heartbeatMsg(draining bool) *blacktreev1.WorkerMessage {
	return &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{Draining: draining}}}
}

// A job a draining worker rejects, with no other worker free, goes back to
// the queue at once, not after the hold timeout; one rejected for another
// reason is held for a free slot as before.
func TestDrainingRejectRequeuesAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reason  blacktreev1.RejectReason
		requeue bool
	}{
		{name: "draining", reason: blacktreev1.RejectReason_REJECT_REASON_DRAINING, requeue: true},
		{name: "no capacity", reason: blacktreev1.RejectReason_REJECT_REASON_NO_CAPACITY, requeue: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, fb := startFakeHub(t, func(c *Config) {
				c.HoldTimeout = time.Minute
				c.AcceptTimeout = time.Minute
			})
			w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "d"}, false)
			a := deliver(t, fb, validJob("dr-1"))
			w.send(rejectMsg(w.expectRunJob().GetJobId(), tc.reason))
			if tc.requeue {
				eventually(t, 5*time.Second, "delivery requeued", func() bool { return a.get() == "nack-requeue" })
				return
			}
			eventually(t, 5*time.Second, "job held", func() bool { return h.dispatcher.heldCount() == 1 })
			if got := a.get(); got != "" {
				t.Errorf("delivery settled %q, want it held unsettled", got)
			}
		})
	}
}

// A drained worker is fenced only once it has said it is draining, and
// drain --wait's condition (fenced, no job) holds only once its running
// job has ended.
func TestFencedOnceWorkerSaysDraining(t *testing.T) {
	h, fb := startFakeHub(t, nil)
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "f"}, false)
	a := deliver(t, fb, validJob("fence-1"))
	w.accept(w.expectRunJob().GetJobId())
	eventually(t, 5*time.Second, "acked", func() bool { return a.get() == "ack" })

	info, ok := h.manager.drain("f", "test")
	if !ok || info.GetFenced() || info.GetState() != blacktreev1.WorkerState_WORKER_STATE_DRAINING {
		t.Fatalf("drain(f) = %v, %v; want draining, not fenced before the worker says so", info, ok)
	}
	w.next("Drain", func(m *blacktreev1.HubMessage) bool { return m.GetDrain() != nil })
	w.send(heartbeatMsg(true))
	infoOf := func() *blacktreev1.WorkerInfo {
		for _, i := range h.manager.list() {
			if i.GetWorkerId() == "f" {
				return i
			}
		}
		return nil
	}
	eventually(t, 5*time.Second, "fenced", func() bool { return infoOf().GetFenced() })
	if ids := infoOf().GetRunningJobIds(); len(ids) != 1 {
		t.Errorf("running_job_ids = %v while the job runs, want [fence-1]", ids)
	}
	w.result("fence-1", true)
	w.expectResultAck("fence-1")
	eventually(t, 5*time.Second, "fenced and idle", func() bool {
		i := infoOf()
		return i.GetFenced() && len(i.GetRunningJobIds()) == 0
	})
	// A worker's own heartbeat cannot undo an operator's drain, nor
	// unfence it while it still says draining.
	w.send(heartbeatMsg(false))
	eventually(t, 5*time.Second, "unfenced: the worker no longer says it drains", func() bool { return !infoOf().GetFenced() })
	if s := infoOf().GetState(); s != blacktreev1.WorkerState_WORKER_STATE_DRAINING {
		t.Errorf("state = %v after a non-draining heartbeat, want the operator's DRAINING", s)
	}
}
