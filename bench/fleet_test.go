package bench

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// fakeHub speaks the hub side of worker.proto just enough to check the
// fleet client: it answers Registered, sends one RunJob per worker, and
// records what comes back.
type fakeHub struct {
	blacktreev1.UnimplementedWorkerServiceServer

	mu       sync.Mutex // guards the following
	auth     []string
	accepted map[string]bool
	results  map[string]bool
	beats    int

	interval time.Duration // heartbeat interval sent in Registered
}

func (h *fakeHub) Connect(stream blacktreev1.WorkerService_ConnectServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	reg := first.GetRegister()
	h.mu.Lock()
	h.auth = append(h.auth, md.Get("authorization")...)
	h.mu.Unlock()
	if err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
		SessionId: "s-" + reg.GetWorkerId(), HeartbeatInterval: durationpb.New(h.interval),
	}}}); err != nil {
		return err
	}
	jobID := "job-" + reg.GetWorkerId()
	if err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_RunJob{RunJob: &blacktreev1.RunJob{Job: Job(jobID)}}}); err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil
		}
		h.mu.Lock()
		switch {
		case m.GetJobAccepted() != nil:
			h.accepted[m.GetJobAccepted().GetJobId()] = true
		case m.GetJobResult() != nil:
			r := m.GetJobResult().GetResponse()
			h.results[r.GetJobId()] = r.GetSuccess()
			h.mu.Unlock()
			_ = stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_ResultAck{ResultAck: &blacktreev1.ResultAck{JobId: r.GetJobId()}}})
			continue
		case m.GetHeartbeat() != nil:
			h.beats++
		}
		h.mu.Unlock()
	}
}

func TestFleetSpeaksTheProtocol(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen() = %v", err)
	}
	srv := grpc.NewServer()
	hub := &fakeHub{accepted: map[string]bool{}, results: map[string]bool{}, interval: 20 * time.Millisecond}
	blacktreev1.RegisterWorkerServiceServer(srv, hub)
	go srv.Serve(ln)
	defer srv.Stop()

	const n = 5
	f := StartFleet(FleetConfig{Addr: ln.Addr().String(), Token: "tok", N: n, Parallel: 2, Prefix: "t"})
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.WaitRegistered(ctx); err != nil {
		t.Fatalf("WaitRegistered() = %v", err)
	}
	// Wait (event-free external state: poll) for every result ack and a
	// few heartbeats.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for f.Stats().Acks < n || f.Stats().Heartbeats < n {
		select {
		case <-ctx.Done():
			t.Fatalf("Stats() = %+v, want %d acks and >= %d heartbeats", f.Stats(), n, n)
		case <-tick.C:
		}
	}
	f.Close()
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if len(hub.accepted) != n || len(hub.results) != n {
		t.Errorf("hub saw %d JobAccepted, %d JobResult, want %d each", len(hub.accepted), len(hub.results), n)
	}
	for id, ok := range hub.results {
		if !ok || !hub.accepted[id] {
			t.Errorf("job %s: success=%v accepted=%v, want both true", id, ok, hub.accepted[id])
		}
	}
	for _, a := range hub.auth {
		if a != "Bearer tok" {
			t.Errorf("authorization = %q, want %q", a, "Bearer tok")
		}
	}
	if s := f.Stats(); s.Registered != n || s.Failed != 0 || s.Jobs != n {
		t.Errorf("Stats() = %+v, want registered=%d failed=0 jobs=%d", s, n, n)
	}
}
