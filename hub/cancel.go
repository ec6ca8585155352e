package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// Canceller is an optional Broker capability (*rabbit.Client has it): the
// cancel queue control planes publish to, and the announcements by which
// the hub that consumed a cancel passes it on to every hub
// (docs/design/cancellation.md). Without it the hub takes cancels only on
// its AdminService, for the jobs it holds or is yet to be delivered.
type Canceller interface {
	// CancelEnabled reports whether the broker consumes a cancel queue.
	CancelEnabled() bool
	// CancelDeliveries yields the cancel queue's messages, one JSON
	// {"jobId","reason"} each, to be settled by the hub.
	CancelDeliveries() <-chan broker.Delivery
	// AnnounceCancel tells every hub, best effort.
	AnnounceCancel(ctx context.Context, r broker.CancelRequest) error
	// CancelAnnouncements yields every hub's announced cancels, this
	// hub's own included.
	CancelAnnouncements() <-chan broker.CancelRequest
}

// cancelOutcome is what a cancel did at this hub.
type cancelOutcome int

const (
	// cancelNotHeld: the hub does not hold the job; it remembers the
	// cancel (a tombstone) in case the job is delivered later.
	cancelNotHeld cancelOutcome = iota
	// cancelAnswered: the job was held, not yet run; it is answered
	// cancelled now.
	cancelAnswered
	// cancelSentToWorker: the job is offered to or running on a worker
	// (or orphaned: when its worker comes back), which is told to cancel
	// it and reports the cancelled result.
	cancelSentToWorker
	// cancelFinished: the job's status is being published; the cancel is
	// dropped.
	cancelFinished
)

func (o cancelOutcome) String() string {
	switch o {
	case cancelAnswered:
		return "answered cancelled"
	case cancelSentToWorker:
		return "sent to the worker"
	case cancelFinished:
		return "already finished"
	default:
		return "not held here"
	}
}

// cancelMessage is the body of a cancel-queue message
// (docs/protocol.md#cancelling-a-job).
type cancelMessage struct {
	JobID  string `json:"jobId"`
	Reason string `json:"reason,omitempty"`
}

// errBadCancel marks a cancel-queue message that cannot be read.
var errBadCancel = errors.New("hub: unreadable cancel message")

func decodeCancel(body []byte) (cancelMessage, error) {
	var m cancelMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return m, fmt.Errorf("%w: %w", errBadCancel, err)
	}
	if err := jobspec.ValidJobID(m.JobID); err != nil {
		return m, fmt.Errorf("%w: %w", errBadCancel, err)
	}
	m.Reason = jobspec.BoundCancelReason(m.Reason)
	return m, nil
}

// cancel serves AdminService.CancelJob the way handleCancelDelivery
// serves the cancel queue: it applies the cancel here, then announces it
// to every hub, so that the one holding the job applies it too. announced
// is false without announcements (no Canceller) or when announcing
// failed (err).
func (d *Dispatcher) cancel(ctx context.Context, jobID, reason string) (out cancelOutcome, announced bool, err error) {
	reason = jobspec.BoundCancelReason(reason)
	out = d.cancelHere(jobID, reason)
	if d.canceller == nil {
		return out, false, nil
	}
	if err := d.announceCancel(ctx, jobID, reason); err != nil {
		return out, false, err
	}
	return out, true, nil
}

// handleCancelDelivery applies a cancel-queue message here at once (in
// the run loop, so a job delivered after it finds its tombstone), then
// announces it on a goroutine of d.wg and acks it once announced (nack
// with requeue if the announcement failed: applying a cancel twice is
// harmless).
func (d *Dispatcher) handleCancelDelivery(del broker.Delivery) {
	m, err := decodeCancel(del.Body)
	if err != nil {
		d.log.Warn("dropping a cancel message", "error", err, "bytes", len(del.Body))
		if nerr := del.Nack(false); nerr != nil {
			d.log.Debug("reject of cancel message failed", "error", nerr)
		}
		return
	}
	d.cancelHere(m.JobID, m.Reason)
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		_ = del.Nack(true) // the hub is stopping: another announces it
		return
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.pubCtx, announceTimeout)
		defer cancel()
		if err := d.announceCancel(ctx, m.JobID, m.Reason); err != nil {
			d.log.Warn("cancel announcement failed; requeueing the cancel", "job_id", m.JobID, "error", err)
			_ = del.Nack(true)
			return
		}
		if err := del.Ack(); err != nil {
			d.log.Debug("ack of cancel message failed", "job_id", m.JobID, "error", err)
		}
	}()
}

func (d *Dispatcher) announceCancel(ctx context.Context, jobID, reason string) error {
	if d.canceller == nil {
		return nil
	}
	return d.canceller.AnnounceCancel(ctx, broker.CancelRequest{HubID: d.cfg.HubID, JobID: jobID, Reason: reason})
}

// cancelAnnounced applies another hub's cancel here.
func (d *Dispatcher) cancelAnnounced(r broker.CancelRequest) {
	if r.HubID == d.cfg.HubID || jobspec.ValidJobID(r.JobID) != nil {
		return
	}
	d.cancelHere(r.JobID, jobspec.BoundCancelReason(r.Reason))
}

func (d *Dispatcher) cancelHere(jobID, reason string) cancelOutcome {
	d.mu.Lock()
	out := d.cancelLocked(jobID, reason)
	d.mu.Unlock()
	return out
}

// cancelLocked applies a cancel to the job table: a held job is answered
// cancelled (its delivery acked once published), an offered or running
// one is told to its worker, a finished one is left alone, and a job not
// here is remembered (tombstones) until it is delivered or the tombstone
// expires.
func (d *Dispatcher) cancelLocked(jobID, reason string) cancelOutcome {
	j := d.jobs[jobID]
	switch {
	case j == nil:
		d.tombs.add(jobID, reason, time.Now())
		d.cancelLog.note(d.log, "cancel for a job not held here; remembering it", jobID)
		return cancelNotHeld
	case j.state == jobPublishing:
		d.cancelLog.note(d.log, "cancel for a finished job; dropping it", jobID)
		return cancelFinished
	}
	j.cancelled, j.cancelReason = true, reason
	switch j.state {
	case jobPending:
		d.answerCancelledLocked(j)
		return cancelAnswered
	case jobOffered, jobRunning:
		d.log.Info("cancelling job on its worker", "job_id", j.id, "worker_id", j.w.id, "reason", reason)
		j.w.send(cancelJobMsg(j.id, reason))
	default: // orphaned: ownLocked tells the worker when it comes back
		d.log.Info("cancel for an orphaned job; its worker is told when it comes back", "job_id", j.id)
	}
	return cancelSentToWorker
}

// answerCancelledLocked publishes a cancelled status for j, which no
// worker runs, and settles its delivery once published.
func (d *Dispatcher) answerCancelledLocked(j *job) {
	d.unholdLocked(j)
	d.stopTimerLocked(j)
	del := j.del
	j.del = nil
	j.state, j.w = jobPublishing, nil
	d.log.Info("job cancelled before it ran", "job_id", j.id, "reason", j.cancelReason)
	d.goPublishLocked(j.id, jobspec.Cancelled(j.id, j.cancelReason), j.corrID, "", del)
}

// markIfCancelledLocked marks j cancelled if a tombstone says so.
func (d *Dispatcher) markIfCancelledLocked(j *job) {
	if reason, ok := d.tombs.take(j.id, time.Now()); ok {
		j.cancelled, j.cancelReason = true, reason
	}
}

// cancelLogEvery bounds the "cancel dropped" log lines: cancels for
// unknown ids are the control plane's to send, and must not flood the log.
const cancelLogEvery = time.Second

// cancelLogLimiter logs at most one line per cancelLogEvery, counting
// the lines it suppressed. Guarded by Dispatcher.mu.
type cancelLogLimiter struct {
	last       time.Time
	suppressed int
}

func (l *cancelLogLimiter) note(log interface {
	Info(string, ...interface{})
}, msg, jobID string) {
	now := time.Now()
	if now.Sub(l.last) < cancelLogEvery {
		l.suppressed++
		return
	}
	log.Info(msg, "job_id", jobID, "suppressed_since_last", l.suppressed)
	l.last, l.suppressed = now, 0
}
