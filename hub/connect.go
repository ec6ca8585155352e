package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Limits on a Register frame.
const (
	maxWorkerIDLen = 128
	maxSlots       = 4096
	maxLabels      = 64
)

// workerService implements WorkerService.
type workerService struct {
	blacktreev1.UnimplementedWorkerServiceServer
	h *Hub
}

func (s *workerService) Connect(stream blacktreev1.WorkerService_ConnectServer) error {
	return s.h.connect(stream)
}

type recvResult struct {
	m   *blacktreev1.WorkerMessage
	err error
}

// validateRegister checks a Register frame; the error is for the worker.
func validateRegister(reg *blacktreev1.Register) error {
	id := reg.GetWorkerId()
	switch {
	case id == "":
		return errors.New("worker_id is required")
	case len(id) > maxWorkerIDLen || !utf8.ValidString(id):
		return fmt.Errorf("worker_id must be at most %d bytes of UTF-8", maxWorkerIDLen)
	case reg.GetSlots() < 1:
		return errors.New("slots must be at least 1")
	case reg.GetSlots() > maxSlots:
		return fmt.Errorf("slots must be at most %d", maxSlots)
	case len(reg.GetLabels()) > maxLabels:
		return fmt.Errorf("at most %d labels", maxLabels)
	}
	return nil
}

// connect serves one worker stream: Register, then a receive loop (its own
// goroutine) and a sender goroutine, until the session ends.
func (h *Hub) connect(stream blacktreev1.WorkerService_ConnectServer) error {
	ctx := stream.Context()
	first := make(chan recvResult, 1)
	h.streamWG.Add(1)
	go func() {
		defer h.streamWG.Done()
		m, err := stream.Recv()
		first <- recvResult{m, err}
	}()
	t := time.NewTimer(h.cfg.RegisterTimeout)
	defer t.Stop()
	var reg *blacktreev1.Register
	select {
	case <-t.C:
		return status.Errorf(codes.DeadlineExceeded, "no Register frame within %v", h.cfg.RegisterTimeout)
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case r := <-first:
		if r.err != nil {
			return r.err
		}
		if reg = r.m.GetRegister(); reg == nil {
			return status.Error(codes.InvalidArgument, "the first frame must be Register")
		}
	}
	if err := validateRegister(reg); err != nil {
		return status.Errorf(codes.InvalidArgument, "invalid Register: %v", err)
	}

	name := reg.GetName()
	if h.cfg.WorkerName != nil {
		if n, ok := h.cfg.WorkerName(ctx); ok && n != "" {
			name = n
		}
	}
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &Worker{
		id: reg.GetWorkerId(), sessionID: newID(), name: name, version: reg.GetVersion(), addr: addr,
		labels: reg.GetLabels(), slots: int(reg.GetSlots()), connected: time.Now(),
		ctx: wctx, cancel: cancel, sendCh: make(chan *blacktreev1.HubMessage, h.cfg.SendQueue),
	}
	w.log = h.log.Named("worker").With("worker_id", w.id, "session_id", w.sessionID)
	w.sendCh <- &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
		SessionId: w.sessionID, HeartbeatInterval: durationpb.New(h.cfg.HeartbeatInterval), HubId: h.cfg.HubID, WorkerName: name,
	}}}
	senderDone := make(chan struct{})
	h.streamWG.Add(1)
	go func() {
		defer h.streamWG.Done()
		defer close(senderDone)
		w.sendLoop(stream.Send)
	}()

	if old := h.manager.register(w, reg.GetDraining()); old != nil {
		old.kill(ErrReplaced)
		h.dispatcher.sessionGone(old, ErrReplaced)
	}
	w.log.Info("worker registered", "name", name, "slots", w.slots, "address", addr, "version", w.version,
		"running_jobs", len(reg.GetRunningJobs()), "unacked_results", len(reg.GetUnackedResults()))
	h.dispatcher.registered(w, reg)

	h.streamWG.Add(1)
	go func() {
		defer h.streamWG.Done()
		h.recvLoop(w, stream)
	}()

	<-wctx.Done()
	cause := context.Cause(wctx)
	if errors.Is(cause, context.Canceled) && ctx.Err() != nil {
		// The stream's own context ended first: gRPC saw the connection
		// break. Say so rather than "context canceled".
		cause = ErrConnectionLost
	}
	// The sender stops at once unless it is blocked in Send (flow control
	// towards a peer that does not read); returning ends that Send too.
	st := time.NewTimer(2 * time.Second)
	select {
	case <-senderDone:
	case <-st.C:
	}
	st.Stop()
	h.manager.gone(w, cause)
	h.dispatcher.sessionGone(w, cause)
	w.log.Info("worker session ended", "error", cause.Error())
	return sessionStatus(cause)
}

// recvLoop is the session's one receive loop.
func (h *Hub) recvLoop(w *Worker, stream blacktreev1.WorkerService_ConnectServer) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("panic handling a worker frame; closing the session", "panic", fmt.Sprintf("%T", p))
			w.kill(errors.New("internal error"))
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				w.kill(ErrStreamClosed)
			case stream.Context().Err() != nil:
				w.kill(ErrConnectionLost)
			default:
				w.kill(fmt.Errorf("receive: %w", err))
			}
			return
		}
		if w.ctx.Err() != nil {
			return // replaced or stopping: frames of a dead session are ignored
		}
		h.manager.touch(w)
		switch f := m.GetFrame().(type) {
		case *blacktreev1.WorkerMessage_Heartbeat:
			draining := f.Heartbeat.GetDraining()
			if h.manager.setDraining(w, draining) {
				w.log.Info("worker draining changed", "draining", draining)
				if !draining {
					h.dispatcher.retryHeld()
				}
			}
		case *blacktreev1.WorkerMessage_JobAccepted:
			h.dispatcher.accepted(w, f.JobAccepted.GetJobId())
		case *blacktreev1.WorkerMessage_JobRejected:
			h.dispatcher.rejected(w, f.JobRejected)
		case *blacktreev1.WorkerMessage_JobLog:
			w.log.Trace("job log chunk", "job_id", f.JobLog.GetJobId(), "seq", f.JobLog.GetSeq(), "bytes", len(f.JobLog.GetData()))
		case *blacktreev1.WorkerMessage_JobResult:
			h.dispatcher.result(w, f.JobResult)
		case *blacktreev1.WorkerMessage_Register:
			w.kill(errors.New("protocol error: second Register on one stream"))
			return
		}
	}
}

// sessionStatus is the RPC status a session ends with.
func sessionStatus(cause error) error {
	switch {
	case errors.Is(cause, ErrStreamClosed):
		return nil
	case errors.Is(cause, ErrReplaced):
		return status.Error(codes.Aborted, cause.Error())
	case errors.Is(cause, ErrMissedHeartbeats):
		return status.Error(codes.DeadlineExceeded, cause.Error())
	case errors.Is(cause, ErrSlowWorker):
		return status.Error(codes.ResourceExhausted, cause.Error())
	case errors.Is(cause, context.Canceled):
		return status.Error(codes.Canceled, cause.Error())
	}
	return status.Error(codes.Unavailable, cause.Error())
}
