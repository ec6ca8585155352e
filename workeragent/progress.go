package workeragent

import (
	"slices"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protover"
)

// Job progress: the stage each running job is in goes to the hub as
// JobProgress frames, only on sessions whose hub announced
// protover.FeatureJobProgress (session.progress). They are best effort:
// offered to the control queue without waiting, so a stalled hub never
// holds up a job, and dropped when it is full. Through the control queue
// a stage leaves after the job's JobAccepted and before its JobResult.
//
// A frame is offered under Agent.mu, and a session is made current under
// the same lock, which then offers every running job's stage (catchUp).
// A job stores its stage before taking the lock, so the last frame a
// session gets for a job is the job's current stage, whichever of the two
// ran first.

// hubTakesProgress reports whether a hub that announced features is sent
// JobProgress frames. An agent speaking as a worker from before the
// handshake sends none.
func (a *Agent) hubTakesProgress(features []string) bool {
	return !a.cfg.UnnumberedProtocol && slices.Contains(features, protover.FeatureJobProgress)
}

// enterStage records the stage j entered and tells the current session.
func (a *Agent) enterStage(j *job, stage blacktreev1.JobStage) {
	j.stage.Store(int32(stage))
	a.journal.stage(j.id, stage)
	a.mu.Lock()
	if s := a.sess; s != nil && s.progress {
		s.offerProgress(j.id, stage)
	}
	a.mu.Unlock()
}

// catchUpProgressLocked offers s the stage of every running job that has
// entered one, for a hub that adopted the jobs or a worker that
// reconnected. Called with a.mu held, as s becomes current.
func (a *Agent) catchUpProgressLocked(s *session) {
	if !s.progress {
		return
	}
	for _, id := range sortedKeys(a.jobs) {
		if stage := blacktreev1.JobStage(a.jobs[id].stage.Load()); stage != blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED {
			s.offerProgress(id, stage)
		}
	}
}

// offerProgress queues a JobProgress frame unless the control queue is
// full. It never blocks: the caller may hold Agent.mu.
func (s *session) offerProgress(jobID string, stage blacktreev1.JobStage) {
	m := &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobProgress{JobProgress: &blacktreev1.JobProgress{
		JobId: jobID,
		Stage: stage,
	}}}
	select {
	case s.ctrl <- m:
	default:
		s.log.Debug("job progress dropped: the send queue is full", "job_id", jobID, "stage", stage.String())
	}
}
