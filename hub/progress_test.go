package hub

import (
	"slices"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protover"
)

func (f *fakeWorker) progress(id string, stage blacktreev1.JobStage) {
	f.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobProgress{JobProgress: &blacktreev1.JobProgress{
		JobId: id,
		Stage: stage,
	}}})
}

// listedJob is the job's JobInfo as ListJobs has it, or an empty one.
func (h *Hub) listedJob(id string) *blacktreev1.JobInfo {
	for _, j := range h.dispatcher.list() {
		if j.GetJobId() == id {
			return j
		}
	}
	return &blacktreev1.JobInfo{}
}

// The stage a worker reports for a job it runs is in ListJobs; a report
// from a session the job does not run on is ignored.
func TestJobProgressShowsInListJobs(t *testing.T) {
	h, fb := startFakeHub(t, nil)
	addr := h.GRPCAddr().String()
	runner := dialWorker(t, addr, &blacktreev1.Register{WorkerId: "runner"}, false)
	if !slices.Contains(runner.reg.GetFeatures(), protover.FeatureJobProgress) {
		t.Fatalf("Registered.features = %v, want %q", runner.reg.GetFeatures(), protover.FeatureJobProgress)
	}
	deliver(t, fb, validJob("prog-1"))
	runner.accept(runner.expectRunJob().GetJobId())
	other := dialWorker(t, addr, &blacktreev1.Register{WorkerId: "other"}, false)

	runner.progress("prog-1", blacktreev1.JobStage_JOB_STAGE_BUILD)
	eventually(t, 5*time.Second, "ListJobs stage build", func() bool {
		return h.listedJob("prog-1").GetStage() == blacktreev1.JobStage_JOB_STAGE_BUILD
	})

	other.progress("prog-1", blacktreev1.JobStage_JOB_STAGE_PUSH)
	// A session's frames are handled in order: once the hub has answered
	// other's JobAccepted for a job never offered to it (CancelJob), it
	// has handled the progress frame before it.
	other.accept("prog-1")
	other.next("CancelJob prog-1", func(m *blacktreev1.HubMessage) bool { return m.GetCancelJob().GetJobId() == "prog-1" })
	if got := h.listedJob("prog-1").GetStage(); got != blacktreev1.JobStage_JOB_STAGE_BUILD {
		t.Errorf("ListJobs stage after another session's JobProgress = %v, want JOB_STAGE_BUILD", got)
	}
	if got := h.listedJob("prog-1"); got.GetState() != jobRunning || got.GetWorkerId() != "runner" {
		t.Errorf("ListJobs job = %v, want running on runner", got)
	}
}
