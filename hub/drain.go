package hub

import (
	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Draining for autoscalers (docs/protocol.md#draining): a worker is
// fenced once the hub offers it nothing (draining, by an operator's
// DrainWorker or its own word) and the worker itself has said it is
// draining (Register.draining, Heartbeat.draining, or a DRAINING reject).
// From then on no hub hands it a job: this one offers none, and the worker
// rejects every RunJob, so a fenced worker whose last job has ended is
// idle for good (WorkerInfo.fenced; btctl drain --wait).
//
// The race between a Drain and a RunJob already on its way is settled by
// the worker: a RunJob it reads before the Drain is accepted and runs to
// its end (the worker is not idle until then); one it reads after is
// rejected with DRAINING, and the hub hands that job to another free
// worker at once, or else back to the queue at once (rejectedByDraining),
// rather than holding it for a slot that may be far away.

// fencedLocked reports whether e's worker takes no new job from any hub.
func (e *workerEntry) fencedLocked() bool {
	return !e.dead && e.draining && e.saysDraining
}

// reassignRejectedLocked finds j, just rejected with reason, a new place:
// another free worker, or a hold until one frees, except that a job a
// draining worker rejected goes back to the queue at once when no free
// worker takes it here, so that another hub can run it now.
func (d *Dispatcher) reassignRejectedLocked(j *job, reason blacktreev1.RejectReason, fx *effects) {
	d.assignLocked(j, fx)
	if reason == blacktreev1.RejectReason_REJECT_REASON_DRAINING && j.state == jobPending && j.del != nil {
		d.requeueLocked(j, fx, "rejected by a draining worker and no other worker is free")
	}
}

// unackedCount is how many deliveries of the execute queue the hub holds
// unacknowledged: received and not yet accepted by a worker (pending,
// held, offered), or accepted with the ack still to come.
func (d *Dispatcher) unackedCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, j := range d.jobs {
		if j.del != nil {
			n++
		}
	}
	return n
}
