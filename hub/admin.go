package hub

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// adminService implements AdminService. Answers never carry a token: the
// job table keeps only the fields JobInfo shows.
type adminService struct {
	blacktreev1.UnimplementedAdminServiceServer
	h *Hub
}

func (a *adminService) ListWorkers(context.Context, *blacktreev1.ListWorkersRequest) (*blacktreev1.ListWorkersResponse, error) {
	return &blacktreev1.ListWorkersResponse{Workers: a.h.manager.list()}, nil
}

func (a *adminService) ListJobs(context.Context, *blacktreev1.ListJobsRequest) (*blacktreev1.ListJobsResponse, error) {
	return &blacktreev1.ListJobsResponse{Jobs: a.h.dispatcher.list()}, nil
}

func (a *adminService) DrainWorker(_ context.Context, req *blacktreev1.DrainWorkerRequest) (*blacktreev1.DrainWorkerResponse, error) {
	if req.GetWorkerId() == "" {
		return nil, status.Error(codes.InvalidArgument, "worker_id is required")
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "drained by an operator"
	}
	info, ok := a.h.manager.drain(req.GetWorkerId(), reason)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no worker %q (or the name is ambiguous)", req.GetWorkerId())
	}
	a.h.log.Info("worker drained by admin", "worker_id", info.GetWorkerId(), "reason", reason)
	return &blacktreev1.DrainWorkerResponse{Worker: info}, nil
}

func (a *adminService) DenyWorker(_ context.Context, req *blacktreev1.DenyWorkerRequest) (*blacktreev1.DenyWorkerResponse, error) {
	if req.GetWorkerId() == "" {
		return nil, status.Error(codes.InvalidArgument, "worker_id is required")
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "denied by an operator"
	}
	id, ended := a.h.manager.deny(req.GetWorkerId(), reason)
	a.h.log.Warn("worker denied by admin", "worker_id", id, "reason", reason, "session_ended", ended)
	return &blacktreev1.DenyWorkerResponse{WorkerId: id, SessionEnded: ended}, nil
}
