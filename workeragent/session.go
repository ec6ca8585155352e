package workeragent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/hbsched"
	"github.com/blacktree/blacktree/internal/protover"
)

const (
	// ctrlQueue and logQueue bound a session's send channels. Control
	// frames (accept, reject, heartbeat, re-sent results) go before the
	// log queue, which carries JobLog chunks and, after them, each job's
	// fresh JobResult (so a result never overtakes its own output).
	ctrlQueue = 64
	logQueue  = 16
	// registerResultBudget bounds the bytes of unacked results carried in
	// Register (the hub's default max message is 4 MiB); the rest are sent
	// as JobResult frames right after Registered.
	registerResultBudget = 2 << 20
)

// errSessionClosed is returned when a frame is offered to a session that
// has ended.
var errSessionClosed = errors.New("session closed")

// session is one Connect stream. Only sendLoop calls stream.Send (after
// Register, which runSession sends before sendLoop starts); only
// runSession's goroutine calls stream.Recv.
type session struct {
	addr      string
	stream    grpc.BidiStreamingClient[blacktreev1.WorkerMessage, blacktreev1.HubMessage]
	cancel    context.CancelFunc
	ctrl      chan *blacktreev1.WorkerMessage
	logs      chan *blacktreev1.WorkerMessage
	closeSend chan struct{} // closed to end the stream cleanly (agent stopping)
	done      chan struct{} // closed when the session is torn down
	log       hclog.Logger
	// schedule carries a HeartbeatInterval frame's schedule from the
	// receive loop to heartbeatLoop; cap 1, a newer schedule replaces
	// one not yet taken.
	schedule chan hbsched.Schedule
	grid     time.Duration // Registered.heartbeat_grid: phases are its multiples; 0: any
	// deployment is Registered.deployment_id: results go only to hubs of
	// the deployment that dispatched their job (takes).
	deployment string
	// progress: the hub announced protover.FeatureJobProgress, so it is
	// sent JobProgress frames (progress.go).
	progress bool

	hbMu      sync.Mutex // serialises sendHeartbeat; guards cacheSent
	cacheSent uint64     // version of the cache summary last queued on the stream
}

// sendCtrl queues a control frame; it blocks while the queue is full and
// fails once the session has ended.
func (s *session) sendCtrl(m *blacktreev1.WorkerMessage) error {
	select {
	case s.ctrl <- m:
		return nil
	case <-s.done:
		return errSessionClosed
	}
}

// runSession dials addr, registers and serves the stream until it breaks.
// registered reports whether the hub answered Registered.
func (a *Agent) runSession(ctx context.Context, addr string) (registered bool, err error) {
	conn, err := a.dial(addr)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.cfg.Token != "" {
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+a.cfg.Token)
	}
	stream, err := blacktreev1.NewWorkerServiceClient(conn).Connect(sctx)
	if err != nil {
		return false, fmt.Errorf("connect %s: %w", addr, err)
	}
	s := &session{
		addr:      addr,
		stream:    stream,
		cancel:    cancel,
		ctrl:      make(chan *blacktreev1.WorkerMessage, ctrlQueue+a.cfg.Slots),
		logs:      make(chan *blacktreev1.WorkerMessage, logQueue),
		closeSend: make(chan struct{}),
		done:      make(chan struct{}),
		log:       a.log.With("hub", addr),
		schedule:  make(chan hbsched.Schedule, 1),
	}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		a.mu.Lock()
		if a.sess == s {
			a.setSessionLocked(nil)
		}
		a.mu.Unlock()
		close(s.done)
		wg.Wait()
		// No ResultAck can come for what was sent on s: write it now,
		// not when its timer fires.
		a.persistUnacked("hub session ended")
	}()

	if err := stream.Send(a.registerFrame(s)); err != nil {
		return false, fmt.Errorf("send register: %w", recvErr(err))
	}
	t := time.AfterFunc(a.cfg.RegisterTimeout, cancel)
	first, err := stream.Recv()
	t.Stop()
	if err != nil {
		return false, fmt.Errorf("waiting for registered: %w", registerErr(err))
	}
	reg := first.GetRegistered()
	if reg == nil {
		return false, fmt.Errorf("hub answered Register with %T, want Registered", first.GetFrame())
	}
	s.grid = reg.GetHeartbeatGrid().AsDuration()
	s.deployment = reg.GetDeploymentId()
	s.progress = a.hubTakesProgress(reg.GetFeatures())
	sched := hbsched.New(heartbeatPeriod(reg.GetHeartbeatInterval()), s.grid)
	a.everRegistered.Store(true)
	s.log = s.log.With("session_id", reg.GetSessionId())
	s.log.Info("registered", "hub_id", reg.GetHubId(), "worker_name", reg.GetWorkerName(), "heartbeat_interval", sched.Period, "heartbeat_grid", s.grid,
		"hub_protocol_version", protover.Effective(reg.GetProtocolVersion()), "hub_features", reg.GetFeatures())

	wg.Add(3)
	go func() { defer wg.Done(); s.sendLoop(sctx) }()
	go func() { defer wg.Done(); a.heartbeatLoop(s, sched) }()
	go func() {
		defer wg.Done()
		select {
		case <-a.stopping:
			close(s.closeSend)
		case <-s.done:
		}
	}()

	// Results produced since Register was built (or left out of it) go
	// as JobResult frames; from now on new results go to s directly.
	// So do the stages the running jobs are in.
	a.mu.Lock()
	a.setSessionLocked(s)
	a.catchUpProgressLocked(s)
	var pending []*blacktreev1.WorkerMessage
	for _, h := range a.results {
		if h.sentOn != s && s.takes(h.res) {
			h.sentOn = s
			pending = append(pending, resultFrame(h.res))
		}
	}
	a.mu.Unlock()
	for _, m := range pending {
		if err := s.sendCtrl(m); err != nil {
			return true, err
		}
	}
	return true, a.receiveLoop(s)
}

func recvErr(err error) error {
	if errors.Is(err, io.EOF) {
		return errHubClosed
	}
	return err
}

// sendLoop is the only goroutine that sends on the stream once the session
// is registered. Control frames go before log frames.
func (s *session) sendLoop(ctx context.Context) {
	for {
		var m *blacktreev1.WorkerMessage
		select {
		case m = <-s.ctrl:
		default:
			select {
			case m = <-s.ctrl:
			case m = <-s.logs:
			case <-s.closeSend:
				s.flushAndCloseSend()
				return
			case <-ctx.Done():
				return
			}
		}
		if err := s.stream.Send(m); err != nil {
			// The real error comes out of Recv; make sure it does.
			s.log.Debug("send failed", "error", err)
			s.cancel()
			return
		}
	}
}

// flushAndCloseSend sends what is already queued (results of jobs cancelled
// by a stop among them), then half-closes the stream so that the hub ends
// it cleanly.
func (s *session) flushAndCloseSend() {
	for {
		var m *blacktreev1.WorkerMessage
		select {
		case m = <-s.ctrl:
		case m = <-s.logs:
		default:
			if err := s.stream.CloseSend(); err != nil {
				s.cancel()
			}
			return
		}
		if err := s.stream.Send(m); err != nil {
			s.cancel()
			return
		}
	}
}

// receiveLoop handles hub frames until the stream ends.
func (a *Agent) receiveLoop(s *session) error {
	for {
		msg, err := s.stream.Recv()
		if err != nil {
			return recvErr(err)
		}
		switch f := msg.GetFrame().(type) {
		case *blacktreev1.HubMessage_RunJob:
			a.handleRunJob(s, f.RunJob)
		case *blacktreev1.HubMessage_ResultAck:
			a.handleResultAck(s, f.ResultAck.GetJobId())
		case *blacktreev1.HubMessage_CancelJob:
			a.handleCancelJob(s, f.CancelJob.GetJobId(), f.CancelJob.GetReason())
		case *blacktreev1.HubMessage_Drain:
			a.Drain("hub asked: " + f.Drain.GetReason())
		case *blacktreev1.HubMessage_HeartbeatInterval:
			s.setSchedule(hbsched.New(heartbeatPeriod(f.HeartbeatInterval.GetInterval()), s.grid))
		case *blacktreev1.HubMessage_Registered:
			s.log.Warn("unexpected second Registered frame; ignoring it")
		default:
			s.log.Warn("unknown frame from hub; ignoring it", "frame", fmt.Sprintf("%T", f))
		}
	}
}

// registerFrame builds Register from the agent's state and marks the
// results it carries as sent on s.
func (a *Agent) registerFrame(s *session) *blacktreev1.WorkerMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	reg := &blacktreev1.Register{
		WorkerId: a.workerID,
		Name:     a.cfg.Name,
		Version:  a.cfg.Version,
		Labels:   a.cfg.Labels,
		Slots:    uint32(a.cfg.Slots),
		Draining: a.draining,
		// heartbeatLoop applies HeartbeatInterval frames.
		HeartbeatIntervalUpdates: true,
	}
	a.announceProtocol(reg)
	// Not yet shared: s.hbMu is not needed. The summary always goes in
	// Register (versions start at 1).
	reg.Cache, s.cacheSent = a.cache.summaryAfter(0)
	for _, id := range sortedKeys(a.jobs) {
		j := a.jobs[id]
		reg.RunningJobs = append(reg.RunningJobs, &blacktreev1.RunningJob{
			JobId:          id,
			StartedAt:      timestamppb.New(j.started),
			DispatchTicket: j.ticket,
		})
	}
	budget := registerResultBudget
	for _, id := range sortedKeys(a.results) {
		h := a.results[id]
		if h.res.GetDispatchTicket() != "" {
			// Which deployment the hub belongs to is known only from
			// Registered: sent after it, to a hub of the job's deployment.
			continue
		}
		if n := proto.Size(h.res); n <= budget {
			budget -= n
			h.sentOn = s
			reg.UnackedResults = append(reg.UnackedResults, h.res)
		}
	}
	return &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: reg}}
}

// takes reports whether a result may be sent on s: its job was dispatched
// by a hub of s's deployment. A result without a ticket (from a hub that
// predates them, or an older state directory), or a hub that does not say
// its deployment, takes the old rule: any hub.
func (s *session) takes(r *blacktreev1.JobResult) bool {
	dep := ticketDeployment(r.GetDispatchTicket())
	return dep == "" || s.deployment == "" || dep == s.deployment
}

// ticketDeployment is the deployment id a dispatch ticket names
// ("<deployment id>.<mac>"), "" for none.
func ticketDeployment(ticket string) string {
	dep, _, ok := strings.Cut(ticket, ".")
	if !ok {
		return ""
	}
	return dep
}

func resultFrame(r *blacktreev1.JobResult) *blacktreev1.WorkerMessage {
	return &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: r}}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
