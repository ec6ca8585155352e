package workeragent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/redact"
	"github.com/blacktree/blacktree/workeragent/executor"
)

// scrubMargin is more than the longest encoded form (every character a
// JSON \u escape, six bytes each) of the longest token jobspec accepts.
const scrubMargin = 7 * jobspec.MaxTokenLen

// job is one accepted job while it runs.
type job struct {
	id      string
	req     *blacktreev1.JobRequest
	started time.Time
	ctx     context.Context
	cancel  context.CancelCauseFunc
	log     hclog.Logger
	// ticket is RunJob.dispatch_ticket, returned to the hub in
	// RunningJob and JobResult (docs/protocol.md#ownership).
	ticket string
	// stage is the stage the job is in (executor.EnterStage), for the
	// cancel grace (a push is never abandoned, cancel.go) and the hub
	// (JobProgress, progress.go).
	stage atomic.Int32
	// killed is closed when a cancelled job outlives its cancel grace:
	// runJob stops waiting for the executor (cancel.go).
	killed   chan struct{}
	cancelMu sync.Mutex  // guards graceTimer
	grace    *time.Timer // the cancel grace; nil until a CancelJob
}

// ErrCancelled is the cause (errors.Is) of a job cancelled by the hub's
// CancelJob.
var ErrCancelled = executor.ErrCancelled

// jobTimeoutError is the cause of a job that ran out of time: its limit.
// Formatted only when a job does time out (every job sets one).
type jobTimeoutError time.Duration

func (e jobTimeoutError) Error() string { return fmt.Sprintf("timed out after %s", time.Duration(e)) }

// handleRunJob answers a RunJob: JobAccepted (and a new run, unless the job
// is already running or its result is held — then it is only accepted
// again) or JobRejected when every slot is taken or the agent is draining.
func (a *Agent) handleRunJob(s *session, rj *blacktreev1.RunJob) {
	req := rj.GetJob()
	id := req.GetJobId()
	if id == "" {
		s.log.Warn("runjob without a job id; rejecting it")
		_ = s.sendCtrl(rejectFrame(id, blacktreev1.RejectReason_REJECT_REASON_UNSPECIFIED, "missing jobId"))
		return
	}
	a.mu.Lock()
	var (
		j      *job
		again  bool // already running or finished here
		reason blacktreev1.RejectReason
		detail string
	)
	switch {
	case a.jobs[id] != nil || a.results[id] != nil:
		again = true
	case !jobspec.LabelsMatch(req.GetWorkerLabels(), a.cfg.Labels):
		reason, detail = blacktreev1.RejectReason_REJECT_REASON_UNSUPPORTED, "worker labels do not match the job's workerLabels"
	case a.draining || a.jobsClosed:
		reason, detail = blacktreev1.RejectReason_REJECT_REASON_DRAINING, "worker is draining"
	case len(a.jobs) >= a.cfg.Slots:
		reason, detail = blacktreev1.RejectReason_REJECT_REASON_NO_CAPACITY, fmt.Sprintf("all %d slots are busy", a.cfg.Slots)
	default:
		ctx, cancel := context.WithCancelCause(a.jobsCtx)
		j = &job{
			id:      id,
			req:     req,
			started: time.Now(),
			ctx:     ctx,
			cancel:  cancel,
			log:     a.log.With("job_id", id),
			ticket:  rj.GetDispatchTicket(),
			killed:  make(chan struct{}),
		}
		a.jobs[id] = j
		a.jobsWG.Add(1)
	}
	a.mu.Unlock()

	if again {
		s.log.Info("runjob for a job already running or finished here; accepting it again", "job_id", id)
	}
	if reason != blacktreev1.RejectReason_REJECT_REASON_UNSPECIFIED {
		s.log.Info("rejecting job", "job_id", id, "reason", detail)
		_ = s.sendCtrl(rejectFrame(id, reason, detail))
		return
	}
	if j != nil {
		// Journalled before the hub hears of it, so that a restart
		// reports the job if this process dies running it.
		if err := a.journal.started(id, j.ticket, j.started); err != nil {
			j.log.Error("job not journalled: if this worker dies running it, the hub reports it lost after its grace", "error", err)
		}
	}
	accepted := &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobAccepted{JobAccepted: &blacktreev1.JobAccepted{JobId: id}}}
	if err := s.sendCtrl(accepted); err != nil {
		if j != nil {
			// The hub never heard of the acceptance: it still owns the
			// job (RabbitMQ redelivers it), so do not run it here.
			j.cancel(err)
			a.journal.done(id)
			a.mu.Lock()
			delete(a.jobs, id)
			a.checkIdleLocked()
			a.mu.Unlock()
			a.jobsWG.Done()
		}
		return
	}
	if j != nil {
		j.log.Info("job accepted", jobspec.LogFieldsWithoutJobID(req)...)
		go a.runJob(j)
	}
}

func rejectFrame(id string, reason blacktreev1.RejectReason, detail string) *blacktreev1.WorkerMessage {
	return &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobRejected{JobRejected: &blacktreev1.JobRejected{
		JobId:   id,
		Reason:  reason,
		Message: detail,
	}}}
}

// handleResultAck forgets an acknowledged result (and its file, if it was
// written).
func (a *Agent) handleResultAck(s *session, id string) {
	a.mu.Lock()
	h, held := a.results[id]
	delete(a.results, id)
	if held && h.timer != nil {
		h.timer.Stop()
	}
	written := held && h.written
	a.checkIdleLocked()
	a.mu.Unlock()
	if !held {
		s.log.Debug("resultack for a result not held; ignoring it", "job_id", id)
		return
	}
	// A result never written costs no file system call; one being
	// written right now is removed by its writer (results.go).
	if written {
		a.filesMu.Lock()
		err := a.state.removeResult(id)
		a.filesMu.Unlock()
		if err != nil {
			s.log.Error("forget acknowledged result", "job_id", id, "error", err)
		}
	}
	s.log.Debug("result acknowledged", "job_id", id)
}

// runJob runs one accepted job to its result.
func (a *Agent) runJob(j *job) {
	defer a.jobsWG.Done()
	timeout := a.cfg.JobTimeout
	if ts := j.req.GetTimeoutSeconds(); ts > 0 {
		timeout = time.Duration(ts) * time.Second
	}
	ctx, cancel := context.WithTimeoutCause(j.ctx, timeout, jobTimeoutError(timeout))
	defer cancel()
	ctx = executor.WithStageFunc(ctx, func(stage blacktreev1.JobStage) { a.enterStage(j, stage) })

	secrets := redact.New(j.req.GetGithubToken())
	ls := newLogStream(j.id, secrets, a.cfg.LogBufferBytes)
	pumpDone := make(chan struct{})
	go func() {
		defer close(pumpDone)
		a.pumpLogs(ls)
	}()
	resp := a.executeUntilKilled(ctx, j, ls, secrets)
	j.stopGrace()
	ls.Close()
	<-pumpDone
	// Finish before releasing the job's context: finishResponse reads its
	// cause to name a cancellation or timeout, and j.cancel would make
	// every failure look cancelled.
	resp = a.finishResponse(ctx, j, resp, secrets)
	j.cancel(nil)
	built := reachedBuild(resp)
	var sendNow, changed bool
	if built {
		sendNow, changed = a.cache.recordBuild(jobspec.CacheKey(j.req))
	}
	a.completeJob(j, resp, sendNow)
	if built {
		a.afterBuild(j, changed)
	}
}

// execute validates the request and runs the executor, turning a panic or a
// nil response into a failed response. The panic value is scrubbed of the
// job's secrets before it is logged (it may quote the request).
func (a *Agent) execute(ctx context.Context, j *job, ls *logStream, secrets *redact.Secrets) (resp *blacktreev1.JobResponse) {
	if err := jobspec.Validate(j.req, a.cfg.Policy); err != nil {
		j.log.Warn("invalid job request", "error", err)
		fmt.Fprintf(ls, "blacktree: %v\n", err)
		return jobspec.Failed(j.id, blacktreev1.JobStage_JOB_STAGE_VALIDATE, err)
	}
	defer func() {
		if p := recover(); p != nil {
			j.log.Error("executor panicked", "panic", secrets.Scrub(fmt.Sprint(p)))
			resp = jobspec.Failed(j.id, blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED, fmt.Errorf("executor %s failed unexpectedly", a.exec.Name()))
		}
	}()
	resp = a.exec.Run(ctx, j.req, ls)
	if resp == nil {
		resp = jobspec.Failed(j.id, blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED, fmt.Errorf("executor %s returned no response", a.exec.Name()))
	}
	return resp
}

// finishResponse makes the response safe to leave the worker: ids and
// timestamps set, cancellation named, secrets scrubbed, strings valid
// UTF-8, every field bounded (jobspec.BoundResponse: logs and error keep
// head and tail, a malformed image URL or digest fails the job).
func (a *Agent) finishResponse(ctx context.Context, j *job, resp *blacktreev1.JobResponse, secrets *redact.Secrets) *blacktreev1.JobResponse {
	resp.JobId = j.id
	resp.WorkerId = a.workerID
	if resp.GetStartedAt() == nil {
		resp.StartedAt = timestamppb.New(j.started)
	}
	if resp.GetFinishedAt() == nil {
		resp.FinishedAt = timestamppb.Now()
	}
	if resp.GetSuccess() {
		resp.Error, resp.FailedStage = "", blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED
	} else {
		resp.ImageUrl, resp.ImageDigest = "", ""
		if reason, ok := executor.Cancelled(ctx); ok {
			// The executor's own words for the interruption are in the
			// logs; the status says cancelled, as the hub's would.
			resp.Error = jobspec.CancelledError(reason)
			resp.FailedStage = blacktreev1.JobStage_JOB_STAGE_CANCELLED
		} else if cause := context.Cause(ctx); cause != nil && !strings.HasPrefix(resp.GetError(), "cancelled") {
			if resp.GetError() == "" {
				resp.Error = fmt.Sprintf("cancelled: %v", cause)
			} else {
				resp.Error = fmt.Sprintf("cancelled: %v (%s)", cause, resp.GetError())
			}
		}
		if resp.GetError() == "" {
			resp.Error = "failed without a reason"
		}
	}
	clean := func(s string) string { return strings.ToValidUTF8(secrets.Scrub(s), "\uFFFD") }
	resp.Logs = boundScrubbed(resp.GetLogs(), a.cfg.ResultLogBytes, clean)
	resp.Error = boundScrubbed(resp.GetError(), jobspec.DefaultErrorBytes, clean)
	resp.ImageUrl = clean(resp.GetImageUrl())
	resp.ImageDigest = clean(resp.GetImageDigest())
	return jobspec.BoundResponse(resp, jobspec.Bounds{
		LogBytes:   a.cfg.ResultLogBytes,
		ErrorBytes: jobspec.DefaultErrorBytes,
	})
}

// boundScrubbed scrubs s and bounds it to max bytes, keeping its head and
// tail around a marker (jobspec.TruncateMiddle). Only what can be kept is
// scrubbed, with scrubMargin bytes more on the cut side so that a secret
// straddling a cut is still recognised, and then cut away.
func boundScrubbed(s string, max int, clean func(string) string) string {
	if len(s) <= max+2*scrubMargin {
		return jobspec.TruncateMiddle(clean(s), max)
	}
	headRaw := s[:max/3+scrubMargin]
	tailRaw := s[len(s)-(max-max/3)-scrubMargin:]
	return jobspec.TruncateMiddleCut(clean(headRaw)+clean(tailRaw), max, len(s)-len(headRaw)-len(tailRaw))
}

// completeJob holds the result, frees the slot and sends the result on the
// current session, if any; otherwise the next Register carries it. The
// result is written to the state dir first with PersistResultsBeforeSend,
// at once when no session is there, else only if its ResultAck is late
// (results.go). With cacheChanged a Heartbeat carrying the new cache
// summary goes first, so that the hub knows the job's key is warm here
// before it sees the result (cache.go).
func (a *Agent) completeJob(j *job, resp *blacktreev1.JobResponse, cacheChanged bool) {
	res := &blacktreev1.JobResult{Response: resp, DispatchTicket: j.ticket}
	h := &heldResult{res: res}
	syncWrite := a.cfg.PersistResultsBeforeSend && a.state.dir != ""
	if syncWrite {
		// No other writer can hold this job id's file: filesMu only keeps
		// this write after one still removing an earlier, acked result.
		a.filesMu.Lock()
		err := a.state.saveResult(res)
		a.filesMu.Unlock()
		if err != nil {
			j.log.Error("result kept in memory only", "error", err)
		}
		h.written = err == nil
	}
	// The journal's entry goes before the result can reach a hub, so that
	// a restart never reports as interrupted a job whose result a hub has
	// published. From here to the result's write or ack, a killed agent
	// loses the result, as it always could (results.go).
	a.journal.done(j.id)
	a.mu.Lock()
	delete(a.jobs, j.id)
	a.results[j.id] = h
	s := a.sess
	if s != nil && !s.takes(res) {
		s = nil // moved to a hub of another deployment: keep it for one of the job's
	}
	h.sentOn = s
	if s != nil && !syncWrite && a.state.dir != "" {
		a.armPersistLocked(j.id, h)
	}
	a.mu.Unlock()
	if resp.GetSuccess() {
		j.log.Info("job succeeded", "image_url", resp.GetImageUrl(), "duration", time.Since(j.started).Round(time.Millisecond))
	} else {
		j.log.Info("job failed", "stage", resp.GetFailedStage().String(), "error", resp.GetError())
	}
	if s == nil {
		// No hub to acknowledge it soon: keep it for a restart now.
		a.persistResult(j.id, h)
		return
	}
	if cacheChanged {
		// A control frame, so it leaves before the result queued below.
		// Not when stopping with a stalled hub (see below).
		_ = a.sendHeartbeat(s, a.jobsCtx.Done())
	}
	// Through the log queue, so the result follows the job's last JobLog
	// chunks. On failure the next Register carries it (and the end of s
	// writes it to the state dir).
	m := resultFrame(res)
	select {
	case s.logs <- m: // room: queue it even when stopping
	default:
		select {
		case s.logs <- m:
		case <-s.done:
		case <-a.jobsCtx.Done():
			// Stopping, and a stalled hub is not taking frames: do not
			// hold up the stop. Run writes the result for the next start.
		}
	}
}
