package workeragent

import (
	"time"

	"context"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/redact"
	"github.com/blacktree/blacktree/workeragent/executor"
)

// handleCancelJob cancels a running job: its context ends with an
// executor.CancelError, which the executor answers by stopping (the noop
// executor at once, the docker one by ending its clone or BuildKit solve;
// a push under way completes). The job's result follows through the
// normal path (journal, held result), failed with stage
// JOB_STAGE_CANCELLED unless the job succeeded first. A job still running
// Config.CancelGrace later, not pushing, is killed: reported cancelled
// without waiting for its executor any longer.
func (a *Agent) handleCancelJob(s *session, id, reason string) {
	a.mu.Lock()
	j := a.jobs[id]
	a.mu.Unlock()
	if j == nil {
		s.log.Info("cancel for a job not running here; ignoring it", "job_id", id)
		return
	}
	reason = jobspec.BoundCancelReason(reason)
	j.cancelMu.Lock()
	defer j.cancelMu.Unlock()
	if j.grace != nil {
		j.log.Debug("cancel for a job already cancelled; ignoring it")
		return
	}
	j.log.Info("cancelling job", "reason", reason, "grace", a.cfg.CancelGrace)
	j.cancel(&executor.CancelError{Reason: reason})
	j.grace = time.AfterFunc(a.cfg.CancelGrace, func() {
		if blacktreev1.JobStage(j.stage.Load()) == blacktreev1.JobStage_JOB_STAGE_PUSH {
			j.log.Info("cancelled job is pushing; letting the push complete")
			return
		}
		j.log.Warn("cancelled job did not stop within its grace; reporting it cancelled without waiting", "grace", a.cfg.CancelGrace)
		close(j.killed)
	})
}

// stopGrace stops the job's cancel grace, if armed: the job is done.
func (j *job) stopGrace() {
	j.cancelMu.Lock()
	defer j.cancelMu.Unlock()
	if j.grace != nil {
		j.grace.Stop()
	}
}

// executeUntilKilled runs execute on a goroutine of its own and returns
// its response, or a cancelled one when the job is killed first. A killed
// job's executor goroutine is still awaited at stop (jobsWG); what it
// writes afterwards is dropped (ls is closed by then).
func (a *Agent) executeUntilKilled(ctx context.Context, j *job, ls *logStream, secrets *redact.Secrets) *blacktreev1.JobResponse {
	done := make(chan *blacktreev1.JobResponse, 1)
	a.jobsWG.Add(1)
	go func() {
		defer a.jobsWG.Done()
		done <- a.execute(ctx, j, ls, secrets)
	}()
	select {
	case resp := <-done:
		return resp
	case <-j.killed:
		reason, _ := executor.Cancelled(ctx)
		resp := jobspec.Cancelled(j.id, reason)
		resp.Logs = "blacktree: the job did not stop within the cancel grace; it was abandoned\n"
		return resp
	}
}
