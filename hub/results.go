package hub

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// accepted: w owns the job from now on; its delivery is acked
// (docs/protocol.md#acknowledging-a-job). Only the session the job was
// offered to (or that runs it already) may accept it; any other
// JobAccepted is refused and answered with CancelJob
// (docs/protocol.md#ownership).
func (d *Dispatcher) accepted(w *Worker, jobID string) {
	d.mu.Lock()
	var fx effects
	j := d.jobs[jobID]
	switch {
	case j != nil && j.state == jobPublishing:
	case j != nil && j.w == w:
		d.ownLocked(j, w, &fx)
	default:
		// Never offered to w, or offered elsewhere after w's accept
		// timeout: the job stays where it is (or with the broker).
		d.refuseLocked(w, jobID, "JobAccepted", refusedNotOwner)
		w.send(cancelJobMsg(jobID, "not offered to this worker"))
	}
	d.mu.Unlock()
	fx.run()
}

// refuseLocked logs and counts a frame about a job that w does not hold.
func (d *Dispatcher) refuseLocked(w *Worker, jobID, frame, reason string) {
	d.metrics.refused.WithLabelValues(reason).Inc()
	w.log.Warn("refusing a frame for a job this worker does not hold", "frame", frame, "job_id", jobID, "reason", reason)
}

// ownLocked makes j RUNNING on w and acks its delivery if still unacked.
func (d *Dispatcher) ownLocked(j *job, w *Worker, fx *effects) {
	if j.w != nil && j.w != w {
		d.m.release(j.w, j.id)
	}
	d.unholdLocked(j)
	d.stopTimerLocked(j)
	d.m.hold(w, j.id)
	j.movedAway = false
	if j.state != jobRunning || j.w != w {
		w.log.Debug("job running", "job_id", j.id) // "job finished" is the info line
	}
	if j.w != w {
		// A stage is what one session reported: a new one reports
		// its own (the worker re-sends it after Registered).
		j.stage = blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED
	}
	j.state, j.w, j.lastWorkerID = jobRunning, w, w.id
	d.eventAcceptedLocked(j, w)
	if j.cancelled {
		w.send(cancelJobMsg(j.id, j.cancelReason))
	}
	if j.accepted.IsZero() {
		j.accepted = time.Now()
	}
	if del := j.del; del != nil {
		j.del = nil
		d.metrics.dispatched.Inc()
		d.metrics.latency.Observe(time.Since(j.received).Seconds())
		id := j.id
		if d.ledger != nil {
			// Acked once the update event naming it is confirmed
			// (docs/design/orphan-ledger.md).
			lj := ledgerJob{JobID: id, CorrelationID: j.corrID, WorkerID: w.id}
			*fx = append(*fx, func() { d.ledger.accept(lj, del) })
			return
		}
		*fx = append(*fx, func() {
			if err := del.Ack(); err != nil {
				// A stale delivery is redelivered by the broker and then
				// dropped as a duplicate of this in-flight job.
				d.log.Warn("ack after acceptance failed", "job_id", id, "error", err)
			}
		})
	}
}

// rejected: w declined the job; offer it elsewhere or hold it. Only the
// session the job is offered to may decline it.
func (d *Dispatcher) rejected(w *Worker, r *blacktreev1.JobRejected) {
	d.mu.Lock()
	var fx effects
	if j := d.jobs[r.GetJobId()]; j != nil && j.w == w && j.state == jobOffered {
		w.log.Info("job rejected", "job_id", j.id, "reason", r.GetReason().String())
		if r.GetReason() == blacktreev1.RejectReason_REJECT_REASON_DRAINING {
			d.m.setDraining(w, true)
		}
		d.m.release(w, j.id)
		j.tried[w.id] = true
		d.reassignRejectedLocked(j, r.GetReason(), &fx)
	} else if j == nil || j.w != w {
		d.refuseLocked(w, r.GetJobId(), "JobRejected", refusedNotOwner)
	}
	d.mu.Unlock()
	fx.run()
}

// ownsLocked decides whether w may report on j (nil: a job this hub does
// not hold) carrying ticket: "" when it may, else the refusal's reason.
// A hub holds its own record of who holds a job: the session it is
// offered to or running on, or, for an orphaned job, the worker id it
// ran on (that id belongs to the same credential, since Register checks
// it). A job it does not hold, or holds unassigned (pending, back from
// the broker), is w's only with a valid dispatch ticket: dispatched to
// w's id and credential by a hub of this deployment, before a restart or
// a move.
func (d *Dispatcher) ownsLocked(w *Worker, j *job, id, ticket string) (reason string) {
	if j != nil {
		switch {
		case j.w == w:
			return ""
		case j.w == nil && j.state == jobOrphaned && j.lastWorkerID == w.id:
			return ""
		case j.w != nil || j.state == jobOrphaned:
			return refusedNotOwner // held by another session or worker
		}
	}
	switch d.tickets.check(ticket, w.id, w.cred, id) {
	case ticketValid:
		return ""
	case ticketOtherDeploy:
		return refusedOtherDeployment
	}
	return refusedNeverDispatched
}

// result publishes a job's response, then answers ResultAck
// (docs/protocol.md#results). A result from a worker that does not hold
// the job is not published (docs/protocol.md#ownership): it is refused
// with a ResultAck, so that the worker stops sending it, unless it
// belongs to another deployment (the worker keeps it for a hub of that
// one). It reports whether the result was taken up.
func (d *Dispatcher) result(w *Worker, res *blacktreev1.JobResult) bool {
	resp := res.GetResponse()
	if resp == nil || jobspec.ValidJobID(resp.GetJobId()) != nil {
		w.log.Warn("ignoring a result without a valid job id")
		return false
	}
	id := resp.GetJobId()
	d.mu.Lock()
	var fx effects
	j := d.jobs[id]
	if j != nil && j.state == jobPublishing {
		d.mu.Unlock()
		if j.lastWorkerID != w.id {
			d.refuse(w, id, refusedNotOwner)
		}
		// else: the publish under way answers ResultAck when done
		return false
	}
	if reason := d.ownsLocked(w, j, id, res.GetDispatchTicket()); reason != "" {
		d.mu.Unlock()
		d.refuse(w, id, reason)
		return false
	}
	resp.WorkerId = w.id // the hub's record, never the worker's word
	var del *broker.Delivery
	corr := ""
	if j == nil {
		j = &job{id: id, tried: map[string]bool{}, received: time.Now()}
		d.jobs[id] = j
	} else {
		d.unholdLocked(j)
		d.stopTimerLocked(j)
		if j.w != nil {
			d.m.release(j.w, id)
		}
		del, corr = j.del, j.corrID
		j.del = nil
	}
	j.state, j.w, j.lastWorkerID = jobPublishing, nil, w.id
	d.retryHeldLocked(&fx)
	d.mu.Unlock()
	fx.run()
	w.log.Info("job finished", "job_id", id, "success", resp.GetSuccess())
	d.goPublish(id, resp, corr, w.id, del)
	return true
}

// refuse counts and logs a refused result and, unless it belongs to
// another deployment, acks it so that the worker forgets it.
func (d *Dispatcher) refuse(w *Worker, id, reason string) {
	d.mu.Lock()
	d.refuseLocked(w, id, "JobResult", reason)
	d.mu.Unlock()
	if reason != refusedOtherDeployment {
		w.send(resultAckMsg(id))
	}
}

// registered adopts a new session's running jobs and publishes its
// unacknowledged results, and announces both to the other replicas. A
// claimed job w does not hold (ownsLocked) is not adopted; unless it
// belongs to another deployment, w is told to cancel it.
func (d *Dispatcher) registered(w *Worker, reg *blacktreev1.Register) {
	var adopted []string
	d.mu.Lock()
	var fx effects
	for _, rj := range reg.GetRunningJobs() {
		id := rj.GetJobId()
		if jobspec.ValidJobID(id) != nil {
			continue
		}
		j := d.jobs[id]
		if j != nil && j.state == jobPublishing {
			continue
		}
		if reason := d.ownsLocked(w, j, id, rj.GetDispatchTicket()); reason != "" {
			// A job of another session stays there; a ticket of another
			// deployment is not this hub's business.
			if reason != refusedOtherDeployment {
				d.refuseLocked(w, id, "Register.running_jobs", reason)
				w.send(cancelJobMsg(id, "not dispatched to this worker"))
			}
			continue
		}
		if j == nil {
			j = &job{id: id, tried: map[string]bool{}, received: time.Now()}
			d.jobs[id] = j
		}
		d.markIfCancelledLocked(j)
		adopted = append(adopted, id)
		w.log.Info("adopting running job", "job_id", id, "was", j.state.String())
		d.ownLocked(j, w, &fx)
	}
	d.mu.Unlock()
	fx.run()
	for _, r := range reg.GetUnackedResults() {
		if d.result(w, r) {
			adopted = append(adopted, r.GetResponse().GetJobId())
		}
	}
	d.goAnnounce(adopted, w.id)
	d.retryHeld()
}

// sessionGone settles the jobs of a session that ended: offered jobs go
// elsewhere, running ones are orphaned for LostWorkerGrace
// (docs/protocol.md#lost-workers).
func (d *Dispatcher) sessionGone(w *Worker, cause error) {
	d.mu.Lock()
	var fx effects
	for _, j := range d.jobs {
		if j.w != w {
			continue
		}
		switch j.state {
		case jobOffered:
			j.tried[w.id] = true
			j.w = nil
			d.assignLocked(j, &fx)
		case jobRunning:
			if j.movedAway {
				d.log.Info("job adopted by another hub; not orphaning it", "job_id", j.id, "worker_id", w.id)
				d.removeLocked(j)
				continue
			}
			j.state, j.w = jobOrphaned, nil
			why := cause.Error()
			d.log.Warn("job orphaned; waiting for its worker to come back", "job_id", j.id, "worker_id", w.id, "grace", d.cfg.LostWorkerGrace, "error", why)
			d.armLocked(j, d.cfg.LostWorkerGrace, func(j *job, _ *effects) { d.lostLocked(j, why) })
		}
	}
	d.mu.Unlock()
	fx.run()
}

// lostLocked reports an orphaned job failed: a report, not a retry.
func (d *Dispatcher) lostLocked(j *job, cause string) {
	if j.state != jobOrphaned {
		return
	}
	j.state = jobPublishing
	d.metrics.lost.Inc()
	err := fmt.Errorf("worker %s lost: %s", j.lastWorkerID, cause)
	d.log.Warn("reporting job lost", "job_id", j.id, "worker_id", j.lastWorkerID, "error", err)
	resp := jobspec.Failed(j.id, blacktreev1.JobStage_JOB_STAGE_DISPATCH, err)
	resp.WorkerId = j.lastWorkerID
	d.goPublishLocked(j.id, resp, j.corrID, "", nil)
}

func (d *Dispatcher) goPublish(jobID string, resp *blacktreev1.JobResponse, corr, workerID string, del *broker.Delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.goPublishLocked(jobID, resp, corr, workerID, del)
}

// goPublishLocked publishes resp on a goroutine of its own (d.wg),
// retrying until the broker confirms (a result is never dropped); then it
// removes the job, acks del (if any) and sends ResultAck to workerID's
// current session. The time from this call to the confirm is observed in
// blacktree_status_publish_seconds.
func (d *Dispatcher) goPublishLocked(jobID string, resp *blacktreev1.JobResponse, corr, workerID string, del *broker.Delivery) {
	if d.stopped {
		return // hub stopping: the worker keeps the result
	}
	d.wg.Add(1)
	since := time.Now()
	go func() {
		defer d.wg.Done()
		sent, err := d.publish(jobID, resp, corr)
		if err == nil {
			d.metrics.publish.Observe(time.Since(since).Seconds())
			d.published(jobID, sent, workerID, del)
			if d.ledger != nil && resp.GetWorkerId() != "" {
				d.ledger.finished(jobID)
			}
		}
		// The job leaves the table only after its ResultAck is queued: a
		// draining hub waits for an empty table, then ends the sessions,
		// which writes what is queued; an ack queued after that would be
		// lost and the worker would re-send the result elsewhere.
		d.mu.Lock()
		if err == nil {
			d.eventFinishedLocked(jobID, sent)
		}
		if j := d.jobs[jobID]; j != nil && j.state == jobPublishing {
			d.removeLocked(j)
		}
		d.mu.Unlock()
		if err != nil && del != nil { // hub stopping: the worker keeps the result
			_ = del.Nack(true)
		}
	}()
}

// published counts a published status, acks its delivery if still unacked
// and queues the worker's ResultAck.
func (d *Dispatcher) published(jobID string, resp *blacktreev1.JobResponse, workerID string, del *broker.Delivery) {
	switch {
	case resp.GetFailedStage() == blacktreev1.JobStage_JOB_STAGE_VALIDATE && workerID == "":
	case resp.GetSuccess():
		d.metrics.succeeded.Inc()
	default:
		d.metrics.failed.Inc()
	}
	d.metrics.buildSteps(resp)
	if del != nil {
		if err := del.Ack(); err != nil {
			d.log.Debug("ack after publishing failed", "job_id", jobID, "error", err)
		}
	}
	if workerID != "" {
		if w := d.m.current(workerID); w != nil {
			w.send(resultAckMsg(jobID))
		}
	}
}

// publish bounds, encodes (encodeStatus) and publishes resp, retrying
// until the broker confirms or the hub stops, and returns the response it
// published. A status the broker refuses for its size is replaced once by
// tooLargeStatus's; if even that is refused, the status is dropped (logged
// as an error) rather than retried forever.
func (d *Dispatcher) publish(jobID string, resp *blacktreev1.JobResponse, corr string) (*blacktreev1.JobResponse, error) {
	resp, body, err := d.encodeStatus(resp)
	if err != nil {
		d.log.Error("cannot encode job response", "job_id", jobID, "error", err)
		return resp, err
	}
	msg := broker.Message{Body: body, MessageID: jobID, CorrelationID: corr}
	backoff := 100 * time.Millisecond
	refused := false
	for {
		err := d.b.Publish(d.pubCtx, msg)
		if err == nil {
			d.log.Debug("status published", "job_id", jobID)
			return resp, nil
		}
		if d.pubCtx.Err() != nil {
			d.log.Warn("hub stopping; status not published (the worker keeps the result)", "job_id", jobID, "error", err)
			return resp, err
		}
		if errors.Is(err, broker.ErrTooLarge) {
			if refused {
				d.log.Error("broker refused even the failed status for its size; status dropped", "job_id", jobID, "error", err)
				return resp, nil
			}
			refused = true
			d.log.Error("broker refused the status for its size; publishing a failed status instead", "job_id", jobID, "bytes", len(body), "error", err)
			resp = tooLargeStatus(resp, fmt.Sprintf("the broker refused its %d bytes (%v)", len(body), err))
			if body, err = jobspec.EncodeResponse(resp); err != nil {
				return resp, err
			}
			msg.Body = body
			continue
		}
		d.log.Warn("publishing status failed; retrying", "job_id", jobID, "error", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-d.pubCtx.Done():
			t.Stop()
		}
		backoff = min(backoff*2, d.cfg.PublishRetryMax)
	}
}

// drain stops taking jobs, requeues held ones and waits until no job is in
// flight or ctx ends.
func (d *Dispatcher) drain(ctx context.Context) error {
	d.mu.Lock()
	var fx effects
	d.draining = true
	for _, j := range append([]*job(nil), d.held...) {
		d.requeueLocked(j, &fx, "hub draining")
	}
	d.mu.Unlock()
	fx.run()
	for {
		d.mu.Lock()
		n, ch := len(d.jobs), d.changed
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			d.reportOrphansNow()
			return fmt.Errorf("%d jobs still in flight: %w", n, ctx.Err())
		}
	}
}

// orphanReportWait bounds how long a stopping hub waits for the broker to
// confirm the lost reports of orphaned jobs.
const orphanReportWait = 5 * time.Second

// reportOrphansNow reports every orphaned job lost at once. It runs when a
// hub stops before their grace periods end: nobody else knows about those
// jobs (their worker is gone and holds no result yet), so forgetting them
// would lose them silently. If the worker does come back to another hub,
// its real result follows the report (consumers prefer a worker's result
// over a lost report; docs/protocol.md#lost-workers).
func (d *Dispatcher) reportOrphansNow() {
	d.mu.Lock()
	var pending []string
	for _, j := range d.jobs {
		if j.state != jobOrphaned {
			continue
		}
		d.stopTimerLocked(j)
		d.lostLocked(j, "the hub stopped before the worker came back")
		pending = append(pending, j.id)
	}
	d.mu.Unlock()
	deadline := time.NewTimer(orphanReportWait)
	defer deadline.Stop()
	for _, id := range pending {
		for {
			d.mu.Lock()
			_, inFlight := d.jobs[id]
			ch := d.changed
			d.mu.Unlock()
			if !inFlight {
				break
			}
			select {
			case <-ch:
			case <-deadline.C:
				d.log.Error("lost reports not confirmed before stopping", "jobs", len(pending))
				return
			}
		}
	}
}

// stop ends publishing, waits for publish goroutines and stops all timers.
// Unsettled deliveries are requeued.
func (d *Dispatcher) stop() {
	d.mu.Lock()
	d.stopped = true // no publish goroutine starts after this
	d.mu.Unlock()
	d.pubCancel()
	d.wg.Wait()
	d.mu.Lock()
	var fx effects
	for _, j := range d.jobs {
		d.stopTimerLocked(j)
		if del := j.del; del != nil {
			j.del = nil
			fx = append(fx, func() { _ = del.Nack(true) })
		}
	}
	d.mu.Unlock()
	fx.run()
}

func jobInfoLocked(j *job) *blacktreev1.JobInfo {
	info := &blacktreev1.JobInfo{
		JobId:      j.id,
		State:      j.state,
		WorkerId:   j.lastWorkerID,
		RepoUrl:    j.req.GetRepoUrl(),
		Branch:     j.req.GetBranch(),
		ImageName:  j.req.GetImageName(),
		ReceivedAt: timestamppb.New(j.received),
	}
	if j.w != nil {
		info.WorkerId = j.w.id
	}
	if !j.accepted.IsZero() {
		info.AcceptedAt = timestamppb.New(j.accepted)
	}
	if j.state == jobRunning {
		info.Stage = j.stage
	}
	return info
}

func sortJobs(js []*blacktreev1.JobInfo) {
	sort.Slice(js, func(a, b int) bool { return js[a].GetJobId() < js[b].GetJobId() })
}
