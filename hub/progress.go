package hub

import (
	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// progress records the stage a JobProgress reports, when w is the session
// the job runs on (the rule jobLog follows); other frames, and stages a
// running job cannot be in, are ignored. A report replaces the last one,
// so a job holds one enum however many its worker sends.
func (d *Dispatcher) progress(w *Worker, p *blacktreev1.JobProgress) {
	stage := p.GetStage()
	applied := false
	if runningStage(stage) {
		d.mu.Lock()
		if j := d.jobs[p.GetJobId()]; j != nil && j.w == w && j.state == jobRunning {
			j.stage = stage
			applied = true
		}
		d.mu.Unlock()
	}
	if !applied && w.log.IsDebug() {
		w.log.Debug("ignoring a job progress frame: not a running stage of a job running on this session",
			"job_id", p.GetJobId(), "stage", stage.String())
	}
}

// runningStage reports whether a running job can be in stage.
func runningStage(stage blacktreev1.JobStage) bool {
	switch stage {
	case blacktreev1.JobStage_JOB_STAGE_CLONE, blacktreev1.JobStage_JOB_STAGE_BUILD, blacktreev1.JobStage_JOB_STAGE_PUSH:
		return true
	}
	return false
}
