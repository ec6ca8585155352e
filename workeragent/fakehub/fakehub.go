// Package fakehub is a scriptable WorkerService for tests of the worker
// agent and the worker binary: a real gRPC server on loopback, built on the
// generated code, that hands each registered stream to the test, which
// reads what the worker sends and decides what the hub answers. It is not
// the hub; it only speaks worker.proto.
package fakehub

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Hub is a fake hub. Every Connect that sends a Register is answered with
// Registered and published on Streams.
type Hub struct {
	blacktreev1.UnimplementedWorkerServiceServer

	// Addr is the listening address.
	Addr string
	// Streams yields each registered stream, in order.
	Streams chan *Stream

	heartbeat time.Duration
	grid      time.Duration // Registered.heartbeat_grid; 0: unset
	token     string
	deploy    atomic.Pointer[string]   // Registered.deployment_id
	features  atomic.Pointer[[]string] // Registered.features
	srv       *grpc.Server
	lis       net.Listener
	done      chan struct{}
	serveErr  chan error
	stopOnce  sync.Once
}

// Options configure a Hub.
type Options struct {
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// HeartbeatInterval sent in Registered; default 1s.
	HeartbeatInterval time.Duration
	// HeartbeatGrid, when set, is sent in Registered.
	HeartbeatGrid time.Duration
	// Token, when set, is required as `authorization: Bearer <Token>`.
	Token string
	// TLS, when set, makes the hub serve TLS.
	TLS *tls.Config
	// DeploymentID is sent in Registered (SetDeploymentID changes it).
	DeploymentID string
	// Features are sent in Registered (SetFeatures changes them).
	Features []string
}

// Start starts a hub and stops it in t.Cleanup.
func Start(t testing.TB, o Options) *Hub {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = time.Second
	}
	var lis net.Listener
	var err error
	// A just-closed port can take a moment to be free again.
	for i := 0; i < 50; i++ {
		if lis, err = net.Listen("tcp", o.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("fakehub: listen %s: %v", o.Addr, err)
	}
	h := &Hub{
		Addr:      lis.Addr().String(),
		Streams:   make(chan *Stream, 16),
		heartbeat: o.HeartbeatInterval,
		grid:      o.HeartbeatGrid,
		token:     o.Token,
		lis:       lis,
		done:      make(chan struct{}),
		serveErr:  make(chan error, 1),
	}
	h.SetDeploymentID(o.DeploymentID)
	h.SetFeatures(o.Features)
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             5 * time.Second,
			PermitWithoutStream: true,
		}),
		// Fixed, small flow-control windows: a paused stream (Stream.Pause)
		// pushes back on the worker after 64 KiB, as a slow hub would.
		grpc.InitialWindowSize(64 << 10),
		grpc.InitialConnWindowSize(64 << 10),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	h.srv = grpc.NewServer(opts...)
	blacktreev1.RegisterWorkerServiceServer(h.srv, h)
	go func() { h.serveErr <- h.srv.Serve(lis) }()
	t.Cleanup(h.Stop)
	return h
}

// SetDeploymentID sets the deployment id later streams are told in
// Registered.
func (h *Hub) SetDeploymentID(id string) { h.deploy.Store(&id) }

// SetFeatures sets the features later streams are told in Registered.
func (h *Hub) SetFeatures(features []string) { h.features.Store(&features) }

// Stop stops the server at once, breaking every stream. Idempotent.
func (h *Hub) Stop() {
	h.stopOnce.Do(func() {
		close(h.done)
		h.srv.Stop()
		<-h.serveErr
	})
}

// Connect implements WorkerService.
func (h *Hub) Connect(stream grpc.BidiStreamingServer[blacktreev1.WorkerMessage, blacktreev1.HubMessage]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if h.token != "" {
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+h.token {
			return status.Error(codes.Unauthenticated, "bad token")
		}
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	reg := first.GetRegister()
	if reg == nil {
		return status.Errorf(codes.InvalidArgument, "first frame is %T, want Register", first.GetFrame())
	}
	s := &Stream{
		MD:       md,
		Register: reg,
		Recv:     make(chan *blacktreev1.WorkerMessage, 4096),
		send:     make(chan *blacktreev1.HubMessage, 64),
		kill:     make(chan struct{}),
		Done:     make(chan struct{}),
		gate:     make(chan struct{}),
	}
	close(s.gate)
	if err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
		SessionId:         fmt.Sprintf("sess-%p", s),
		HeartbeatInterval: durationpb.New(h.heartbeat),
		HubId:             "fakehub",
		WorkerName:        reg.GetName(),
		HeartbeatGrid:     optDuration(h.grid),
		DeploymentId:      *h.deploy.Load(),
		Features:          *h.features.Load(),
	}}}); err != nil {
		return err
	}
	select {
	case h.Streams <- s:
	case <-h.done:
		return status.Error(codes.Unavailable, "stopping")
	}
	defer close(s.Done)
	recvErr := make(chan error, 1)
	go func() {
		defer close(s.Recv)
		for {
			s.mu.Lock()
			gate := s.gate
			s.mu.Unlock()
			select {
			case <-gate:
			case <-stream.Context().Done():
				recvErr <- stream.Context().Err()
				return
			}
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case s.Recv <- m:
			default:
				recvErr <- errors.New("fakehub: test is not reading frames")
				return
			}
		}
	}()
	for {
		select {
		case m := <-s.send:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-s.kill:
			return status.Error(codes.Unavailable, "fakehub: stream killed")
		case <-recvErr:
			return nil // the worker closed its side (or broke it)
		case <-h.done:
			return status.Error(codes.Unavailable, "fakehub: stopping")
		}
	}
}

// Stream is one registered worker stream.
type Stream struct {
	// MD is the request metadata.
	MD metadata.MD
	// Register is the worker's first frame.
	Register *blacktreev1.Register
	// Recv yields every later frame; closed when the worker's side ends.
	Recv chan *blacktreev1.WorkerMessage
	// Done is closed when the stream's handler returned.
	Done chan struct{}

	send     chan *blacktreev1.HubMessage
	kill     chan struct{}
	killOnce sync.Once

	mu   sync.Mutex    // guards gate
	gate chan struct{} // closed while the hub reads frames
}

// Pause stops reading the worker's frames, like a hub that cannot keep
// up; gRPC flow control then pushes back on the worker.
func (s *Stream) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
		s.gate = make(chan struct{})
	default:
	}
}

// Resume reads frames again.
func (s *Stream) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
	default:
		close(s.gate)
	}
}

// Send queues a frame to the worker.
func (s *Stream) Send(t testing.TB, m *blacktreev1.HubMessage) {
	t.Helper()
	select {
	case s.send <- m:
	case <-s.Done:
		t.Fatalf("fakehub: send on a finished stream")
	case <-time.After(5 * time.Second):
		t.Fatalf("fakehub: send timed out")
	}
}

// Kill ends the stream with an error, as a crashing hub would.
func (s *Stream) Kill() { s.killOnce.Do(func() { close(s.kill) }) }

// WaitFor returns the first frame for which match is true, discarding the
// others, or fails the test after d.
func (s *Stream) WaitFor(t testing.TB, d time.Duration, what string, match func(*blacktreev1.WorkerMessage) bool) *blacktreev1.WorkerMessage {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case m, ok := <-s.Recv:
			if !ok {
				t.Fatalf("fakehub: stream ended while waiting for %s", what)
			}
			if match(m) {
				return m
			}
		case <-deadline.C:
			t.Fatalf("fakehub: no %s within %s", what, d)
		}
	}
}

// NextStream waits for the next registered stream.
func (h *Hub) NextStream(t testing.TB, d time.Duration) *Stream {
	t.Helper()
	select {
	case s := <-h.Streams:
		return s
	case <-time.After(d):
		t.Fatalf("fakehub: no worker registered within %s", d)
		return nil
	}
}

// RunJobTicket is RunJob with a dispatch ticket.
func RunJobTicket(req *blacktreev1.JobRequest, ticket string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_RunJob{RunJob: &blacktreev1.RunJob{Job: req, DispatchTicket: ticket}}}
}

// RunJob builds a RunJob frame.
func RunJob(req *blacktreev1.JobRequest) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_RunJob{RunJob: &blacktreev1.RunJob{Job: req}}}
}

// Ack builds a ResultAck frame.
func Ack(jobID string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_ResultAck{ResultAck: &blacktreev1.ResultAck{JobId: jobID}}}
}

// Cancel builds a CancelJob frame.
func Cancel(jobID, reason string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_CancelJob{CancelJob: &blacktreev1.CancelJob{
		JobId:  jobID,
		Reason: reason,
	}}}
}

// Drain builds a Drain frame.
func Drain(reason string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Drain{Drain: &blacktreev1.Drain{Reason: reason}}}
}

// IsResult matches the JobResult of jobID.
func IsResult(jobID string) func(*blacktreev1.WorkerMessage) bool {
	return func(m *blacktreev1.WorkerMessage) bool { return m.GetJobResult().GetResponse().GetJobId() == jobID }
}

// IsAccepted matches the JobAccepted of jobID.
func IsAccepted(jobID string) func(*blacktreev1.WorkerMessage) bool {
	return func(m *blacktreev1.WorkerMessage) bool { return m.GetJobAccepted().GetJobId() == jobID }
}

// IsRejected matches the JobRejected of jobID.
func IsRejected(jobID string) func(*blacktreev1.WorkerMessage) bool {
	return func(m *blacktreev1.WorkerMessage) bool { return m.GetJobRejected().GetJobId() == jobID }
}

func optDuration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}
