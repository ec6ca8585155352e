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
	return validateRegisterSizes(reg)
}

// sendQueueBound is how many frames may wait for a worker with slots:
// the fixed allowance plus a RunJob, a ResultAck and a CancelJob per slot,
// so that a healthy worker whose every slot turns over at once is never
// taken for one that does not read.
func sendQueueBound(fixed, slots int) int { return fixed + 3*slots }

// awaitRegister receives the first frame, which must be Register, within
// Config.RegisterTimeout.
func (h *Hub) awaitRegister(stream blacktreev1.WorkerService_ConnectServer) (*blacktreev1.Register, error) {
	ctx := stream.Context()
	first := make(chan recvResult, 1)
	h.streamWG.Go(func() {
		// Ends with the frame, or when the handler returns (which ends
		// the stream) on a timeout.
		m, err := stream.Recv()
		first <- recvResult{m, err}
	})
	t := time.NewTimer(h.cfg.RegisterTimeout)
	defer t.Stop()
	select {
	case <-t.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "no Register frame within %v", h.cfg.RegisterTimeout)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case r := <-first:
		if r.err != nil {
			return nil, r.err
		}
		reg := r.m.GetRegister()
		if reg == nil {
			return nil, status.Error(codes.InvalidArgument, "the first frame must be Register")
		}
		if err := validateRegister(reg); err != nil {
			h.metrics.registerRefused(refusedInvalid)
			return nil, status.Errorf(codes.InvalidArgument, "invalid Register: %v", err)
		}
		return reg, nil
	}
}

// connect serves one worker stream: Register, then the receive loop on
// this (the handler's) goroutine until the session ends. Frames to the
// worker go through Worker.send. An idle worker costs the hub one
// goroutine of its own (docs/design/idle-worker-memory.md).
//
// A session the hub ends (replaced, missed heartbeats, slow reader, token
// revoked, hub stopping) is cleaned up at once by endSession; since the handler may be
// blocked in Recv on a connection that is up but silent, endSession then
// closes the worker's connection, which ends Recv.
func (h *Hub) connect(stream blacktreev1.WorkerService_ConnectServer) error {
	reg, err := h.awaitRegister(stream)
	if err != nil {
		return err
	}
	protocol, err := h.checkProtocol(reg)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	release, err := h.admit(ctx, reg)
	if err != nil {
		return err
	}
	defer release()
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
	w := &Worker{
		id:              reg.GetWorkerId(),
		sessionID:       newID(),
		name:            name,
		version:         reg.GetVersion(),
		addr:            addr,
		labels:          reg.GetLabels(),
		slots:           int(reg.GetSlots()),
		intervalUpdates: reg.GetHeartbeatIntervalUpdates(),
		protocol:        protocol,
		features:        reg.GetFeatures(),
		connected:       time.Now(),
		done:            make(chan struct{}),
		stream:          stream.Send,
		authCtx:         ctx,
		maxQueue:        sendQueueBound(h.cfg.SendQueue, int(reg.GetSlots())),
		wg:              &h.streamWG,
		held:            true, // until register has made it the worker's session
	}
	w.log = h.log.Named("worker").With("worker_id", w.id, "session_id", w.sessionID)
	if h.cfg.Credential != nil {
		w.cred = h.cfg.Credential(ctx)
	}
	idLock := h.idLock(w.id)
	idLock.Lock() // until registered: the check and the registration are one step
	if err := h.claimIdentity(w); err != nil {
		idLock.Unlock()
		h.metrics.refused.WithLabelValues(refusedIdentity).Inc()
		w.log.Warn("refusing a Register: the worker id belongs to another credential", "name", name, "address", addr, "error", err)
		return status.Errorf(codes.PermissionDenied, "worker id %q: %v; every worker needs an id of its own (its own --state-dir)", w.id, err)
	}
	// endSession runs on its own goroutine the moment the session ends,
	// whatever ends it (once registration is done, so that the fleet never
	// sees the end before the start); the handler waits for it below.
	registered, ended := make(chan struct{}), make(chan struct{})
	w.onEnd = func() {
		defer close(ended)
		<-registered
		h.endSession(w)
	}
	w.receiving.Store(true)
	h.conns.attach(addr)
	defer h.conns.detach(addr)

	// Registration runs on a short-lived goroutine: its logging and
	// bookkeeping would otherwise grow this goroutine's stack, which an
	// idle worker then keeps for the session's life.
	h.streamWG.Go(func() {
		defer close(registered)
		h.register(w, reg)
	})
	<-registered
	idLock.Unlock()

	cause := h.recvLoop(w, stream)
	w.receiving.Store(false) // before kill: endSession need not close the connection
	if cause != nil {
		w.kill(cause)
	}
	<-ended // endSession has flushed what was queued
	h.stopCloseTimer(w)
	return sessionStatus(w.endCause())
}

// register makes w the worker's session: Registered frame, manager,
// dispatcher (jobs and results the worker reports).
//
// Registered is queued first (by the manager, with the heartbeat
// interval the fleet's size calls for), so that it is the session's first
// frame whatever the dispatcher sends once the manager has w, but w is
// held until the manager has it: a worker that has read Registered knows the
// hub has made this stream its session, so a later Register with the same
// id (a reconnect) replaces this one and never the other way round.
func (h *Hub) register(w *Worker, reg *blacktreev1.Register) {
	old := h.manager.register(w, reg.GetDraining(), func(interval time.Duration) {
		w.send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
			SessionId:          w.sessionID,
			HeartbeatInterval:  durationpb.New(interval),
			HubId:              h.cfg.HubID,
			WorkerName:         w.name,
			HeartbeatGrid:      h.heartbeatGrid(),
			DeploymentId:       h.cfg.DeploymentID,
			ProtocolVersion:    h.cfg.MaxProtocolVersion,
			MinProtocolVersion: h.cfg.MinProtocolVersion,
			Features:           hubFeatures,
		}}})
	})
	if cs := reg.GetCache(); cs != nil {
		h.noteCache(w, cs)
	}
	w.release()
	if old != nil {
		old.kill(ErrReplaced)
		h.dispatcher.sessionGone(old, ErrReplaced)
	}
	w.log.Info("worker registered", "name", w.name, "slots", w.slots, "address", w.addr, "version", w.version,
		"protocol_version", w.protocol, "features", w.features,
		"running_jobs", len(reg.GetRunningJobs()), "unacked_results", len(reg.GetUnackedResults()))
	h.dispatcher.registered(w, reg)
}

// endSession takes an ended session out of the fleet: the manager marks
// the worker gone, the dispatcher starts the lost-worker grace for its
// jobs. When the handler is still blocked in Recv (the hub ended the
// session, not the stream), it closes the worker's connection so that Recv
// returns, once the frames already queued are written (at most 2s).
func (h *Hub) endSession(w *Worker) {
	cause := w.endCause()
	h.manager.gone(w, cause)
	h.dispatcher.sessionGone(w, cause)
	w.log.Info("worker session ended", "error", cause.Error())
	w.flushSend(2 * time.Second)
	if !w.receiving.Load() {
		return // the handler is returning: that ends the stream
	}
	// Send only hands a frame to grpc-go's writer; give it a moment to
	// reach the socket before the connection goes.
	h.streamWG.Add(1)
	t := time.AfterFunc(closeFlushDelay, func() {
		defer h.streamWG.Done()
		if w.receiving.Load() && h.conns.closeIfSole(w.addr) {
			w.log.Debug("closed the worker's connection")
		}
	})
	w.sendMu.Lock()
	w.closeTimer = t
	w.sendMu.Unlock()
}

// closeFlushDelay is how long endSession lets grpc-go write the frames it
// was handed before it closes the connection of a session the hub ended.
const closeFlushDelay = 200 * time.Millisecond

// stopCloseTimer cancels endSession's pending close once the handler
// returns by itself.
func (h *Hub) stopCloseTimer(w *Worker) {
	w.sendMu.Lock()
	t := w.closeTimer
	w.closeTimer = nil
	w.sendMu.Unlock()
	if t != nil && t.Stop() {
		h.streamWG.Done()
	}
}

// recvLoop is the session's one receive loop. It returns why the session
// ended when the stream says so (EOF, broken, protocol error, panic), or
// nil once the session was ended elsewhere.
func (h *Hub) recvLoop(w *Worker, stream blacktreev1.WorkerService_ConnectServer) (cause error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("panic handling a worker frame; closing the session", "panic", fmt.Sprintf("%T", p))
			cause = errors.New("internal error")
		}
	}()
	var m *blacktreev1.WorkerMessage
	for {
		// Heartbeats are decoded into the same structs (frameCodec).
		m = nextFrame(m)
		if err := stream.RecvMsg(m); err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return ErrStreamClosed
			case stream.Context().Err() != nil:
				return ErrConnectionLost
			default:
				return fmt.Errorf("receive: %w", err)
			}
		}
		if w.ended() {
			return nil // replaced or stopping: frames of a dead session are ignored
		}
		frame := m.GetFrame()
		if _, ok := frame.(*blacktreev1.WorkerMessage_Heartbeat); !ok {
			h.manager.touch(w) // a heartbeat is recorded by manager.heartbeat, under the same lock
		}
		switch f := frame.(type) {
		case *blacktreev1.WorkerMessage_Heartbeat:
			if cs := f.Heartbeat.GetCache(); cs != nil {
				h.noteCache(w, cs)
			}
			draining := f.Heartbeat.GetDraining()
			if h.manager.heartbeat(w, draining) {
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
			if w.log.IsTrace() { // the arguments would be boxed for nothing
				w.log.Trace("job log chunk", "job_id", f.JobLog.GetJobId(), "seq", f.JobLog.GetSeq(), "bytes", len(f.JobLog.GetData()))
			}
			h.dispatcher.jobLog(w, f.JobLog)
		case *blacktreev1.WorkerMessage_JobResult:
			h.dispatcher.result(w, f.JobResult)
		case *blacktreev1.WorkerMessage_JobProgress:
			h.dispatcher.progress(w, f.JobProgress)
		case *blacktreev1.WorkerMessage_Register:
			return errors.New("protocol error: second Register on one stream")
		}
	}
}

// noteCache records the cache summary a Register or Heartbeat carried,
// bounded (cachesummary.go).
func (h *Hub) noteCache(w *Worker, cs *blacktreev1.CacheSummary) {
	s, trimmed := boundCacheSummary(cs)
	if trimmed {
		w.log.Warn("cache summary over the hub's bounds; keeping what fits", "build_keys", len(cs.GetBuildKeys()),
			"base_images", len(cs.GetBaseImages()), "max_entries", maxCacheEntries)
	}
	h.manager.setCache(w, s)
	if w.log.IsDebug() {
		w.log.Debug("cache summary", "build_keys", len(s.keys), "base_images", len(s.images), "bytes", s.bytes)
	}
}

// sessionStatus is the RPC status a session ends with.
func sessionStatus(cause error) error {
	switch {
	case errors.Is(cause, ErrStreamClosed):
		return nil
	case errors.Is(cause, ErrReplaced):
		return status.Error(codes.Aborted, cause.Error())
	case errors.Is(cause, ErrRevoked):
		return status.Error(codes.Unauthenticated, cause.Error())
	case errors.Is(cause, ErrDenied):
		return status.Error(codes.PermissionDenied, cause.Error())
	case errors.Is(cause, ErrMissedHeartbeats):
		return status.Error(codes.DeadlineExceeded, cause.Error())
	case errors.Is(cause, ErrSlowWorker):
		return status.Error(codes.ResourceExhausted, cause.Error())
	case errors.Is(cause, context.Canceled):
		return status.Error(codes.Canceled, cause.Error())
	}
	return status.Error(codes.Unavailable, cause.Error())
}
