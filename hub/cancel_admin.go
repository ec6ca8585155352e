package hub

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// CancelJob cancels a job through the cancel queue's path
// (Dispatcher.cancel). A failed announcement is not an error: the cancel
// is applied here, and the answer says it was not passed on.
func (a *adminService) CancelJob(ctx context.Context, req *blacktreev1.CancelJobRequest) (*blacktreev1.CancelJobResponse, error) {
	if err := jobspec.ValidJobID(req.GetJobId()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "job_id: %v", err)
	}
	actx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	out, announced, err := a.h.dispatcher.cancel(actx, req.GetJobId(), req.GetReason())
	if err != nil {
		a.h.log.Warn("cancel by admin not passed on to the other hubs", "job_id", req.GetJobId(), "error", err)
	}
	a.h.log.Info("job cancelled by admin", "job_id", req.GetJobId(), "outcome", out.String(), "announced", announced)
	return &blacktreev1.CancelJobResponse{Outcome: out.proto(), Announced: announced}, nil
}

func (o cancelOutcome) proto() blacktreev1.CancelJobOutcome {
	switch o {
	case cancelAnswered:
		return blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_ANSWERED
	case cancelSentToWorker:
		return blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_SENT_TO_WORKER
	case cancelFinished:
		return blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_FINISHED
	default:
		return blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_NOT_HELD
	}
}
