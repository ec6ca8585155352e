package workeragent

import (
	"context"
	"io"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// stubbornExec ignores cancellation: it returns only when released, like
// a build step that does not stop.
type stubbornExec struct {
	started, release chan struct{}
	stage            blacktreev1.JobStage
}

func (stubbornExec) Name() string { return "stubborn" }

func (e stubbornExec) Run(ctx context.Context, req *blacktreev1.JobRequest, _ io.Writer) *blacktreev1.JobResponse {
	executor.EnterStage(ctx, e.stage)
	close(e.started)
	<-e.release
	return &blacktreev1.JobResponse{JobId: req.GetJobId(), Success: true, ImageUrl: req.GetImageName()}
}

// TestCancelGraceKillsStubbornJob: a cancelled job whose executor does not
// stop is reported cancelled once the grace is over, and only once.
func TestCancelGraceKillsStubbornJob(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	e := stubbornExec{started: make(chan struct{}), release: make(chan struct{}), stage: blacktreev1.JobStage_JOB_STAGE_BUILD}
	r := startAgent(t, Config{HubAddrs: []string{hub.Addr}, CancelGrace: 200 * time.Millisecond}, e)
	defer close(e.release) // before the agent's stop, which awaits the executor
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("stubborn")))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("stubborn"))
	<-e.started
	s.Send(t, fakehub.Cancel("stubborn", "user asked"))
	res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("stubborn")).GetJobResult().GetResponse()
	if res.GetSuccess() || res.GetError() != "cancelled: user asked" || res.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_CANCELLED {
		t.Fatalf("killed job result = success %v, error %q, stage %v; want a cancelled failure", res.GetSuccess(), res.GetError(), res.GetFailedStage())
	}
	s.Send(t, fakehub.Ack("stubborn"))
	_ = r
}

// TestCancelDuringPushCompletes: a cancel that finds the job pushing does
// not kill it at the grace; the push completes and the job reports it.
func TestCancelDuringPushCompletes(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	e := stubbornExec{started: make(chan struct{}), release: make(chan struct{}), stage: blacktreev1.JobStage_JOB_STAGE_PUSH}
	startAgent(t, Config{HubAddrs: []string{hub.Addr}, CancelGrace: 100 * time.Millisecond}, e)
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("pushing")))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("pushing"))
	<-e.started
	s.Send(t, fakehub.Cancel("pushing", "too late"))
	time.Sleep(500 * time.Millisecond) // well past the grace
	close(e.release)
	res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("pushing")).GetJobResult().GetResponse()
	if !res.GetSuccess() {
		t.Fatalf("job cancelled during its push: result = %v, want the push's success", res)
	}
	s.Send(t, fakehub.Ack("pushing"))
}
