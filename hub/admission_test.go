package hub

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// tryRegister opens a Connect stream on conn with the metadata key=value
// pairs, sends reg and returns the stream (nil when refused) and the error
// it was refused with.
func tryRegister(t *testing.T, conn *grpc.ClientConn, reg *blacktreev1.Register, kv ...string) (grpc.BidiStreamingClient[blacktreev1.WorkerMessage, blacktreev1.HubMessage], error) {
	t.Helper()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), kv...))
	t.Cleanup(cancel)
	stream, err := blacktreev1.NewWorkerServiceClient(conn).Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: reg}}); err != nil {
		_, err = stream.Recv()
		return nil, err
	}
	m, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if m.GetRegistered() == nil {
		t.Fatalf("first frame = %v, want Registered", m)
	}
	return stream, nil
}

func dialAddr(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Every free-form Register field is bounded: a Register over any bound is
// refused with InvalidArgument naming the field, and counted.
func TestRegisterBounds(t *testing.T) {
	h, _ := startFakeHub(t, nil)
	conn := dialAddr(t, h.GRPCAddr().String())
	big := strings.Repeat("x", 300)
	manyLabels := map[string]string{}
	for i := range 65 {
		manyLabels[fmt.Sprint("k", i)] = "v"
	}
	manyJobs := make([]*blacktreev1.RunningJob, maxRunningJobs+1)
	for i := range manyJobs {
		manyJobs[i] = &blacktreev1.RunningJob{JobId: fmt.Sprint("j", i)}
	}
	manyResults := make([]*blacktreev1.JobResult, maxUnackedResults+1)
	for i := range manyResults {
		manyResults[i] = &blacktreev1.JobResult{}
	}
	for _, tc := range []struct {
		name, want string
		reg        *blacktreev1.Register
	}{
		{"name", "name must be", &blacktreev1.Register{WorkerId: "w", Slots: 1, Name: big}},
		{"version", "version must be", &blacktreev1.Register{WorkerId: "w", Slots: 1, Version: big}},
		{"label count", "labels", &blacktreev1.Register{WorkerId: "w", Slots: 1, Labels: manyLabels}},
		{"label key", "label keys", &blacktreev1.Register{WorkerId: "w", Slots: 1, Labels: map[string]string{big: "v"}}},
		{"label value", "label keys", &blacktreev1.Register{WorkerId: "w", Slots: 1, Labels: map[string]string{"k": big}}},
		{"slots", "slots", &blacktreev1.Register{WorkerId: "w", Slots: maxSlots + 1}},
		{"running jobs", "running_jobs", &blacktreev1.Register{WorkerId: "w", Slots: 1, RunningJobs: manyJobs}},
		{"running job id", "job_id", &blacktreev1.Register{WorkerId: "w", Slots: 1, RunningJobs: []*blacktreev1.RunningJob{{JobId: big}}}},
		{"unacked results", "unacked_results", &blacktreev1.Register{WorkerId: "w", Slots: 1, UnackedResults: manyResults}},
	} {
		_, err := tryRegister(t, conn, tc.reg)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("%s over its bound: Register = %v, want InvalidArgument mentioning %q", tc.name, err, tc.want)
		}
	}
	if got := counterValue(h.metrics.registerRefusals.WithLabelValues(refusedInvalid)); got != 9 {
		t.Errorf("register_refused_total{reason=invalid} = %v, want 9", got)
	}
	if _, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: "w", Slots: 1, Name: strings.Repeat("x", maxNameLen)}); err != nil {
		t.Errorf("Register at the bounds = %v, want Registered", err)
	}
}

// One credential holds at most MaxSessionsPerCredential worker ids; a
// reconnect of a counted worker id is not refused, another credential is
// not affected, and a place frees when a session ends.
func TestSessionsPerCredential(t *testing.T) {
	h, _ := startFakeHub(t, func(c *Config) {
		c.MaxSessionsPerCredential = 3
		c.SessionKey = func(ctx context.Context) string {
			md, _ := metadata.FromIncomingContext(ctx)
			return strings.Join(md.Get("x-credential"), ",")
		}
	})
	conn := dialAddr(t, h.GRPCAddr().String())
	var first grpc.BidiStreamingClient[blacktreev1.WorkerMessage, blacktreev1.HubMessage]
	for i := range 3 {
		s, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: fmt.Sprint("w", i), Slots: 1}, "x-credential", "a")
		if err != nil {
			t.Fatalf("session %d = %v, want Registered", i, err)
		}
		if i == 0 {
			first = s
		}
	}
	for i := 3; i < 20; i++ {
		_, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: fmt.Sprint("w", i), Slots: 1}, "x-credential", "a")
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-sessions-per-token") {
			t.Fatalf("session %d past the limit = %v, want ResourceExhausted naming the flag", i, err)
		}
	}
	if got := counterValue(h.metrics.registerRefusals.WithLabelValues(refusedSessionLimit)); got != 17 {
		t.Errorf("register_refused_total{reason=session_limit} = %v, want 17", got)
	}
	// A reconnect of w1 replaces its session and takes no new place.
	if _, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: "w1", Slots: 1}, "x-credential", "a"); err != nil {
		t.Errorf("reconnect of a counted worker id = %v, want Registered", err)
	}
	if _, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: "other", Slots: 1}, "x-credential", "b"); err != nil {
		t.Errorf("another credential = %v, want Registered", err)
	}
	// w0 leaves: its place is free for a new worker id.
	_ = first.CloseSend()
	_, _ = first.Recv()
	eventually(t, 5*time.Second, "a freed place taken", func() bool {
		_, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: "w-new", Slots: 1}, "x-credential", "a")
		return err == nil
	})
}

// docs/SECURITY.md#limits: an operator's drain outlives the session (the
// worker reconnects draining and gets no job), and a denied worker is
// ended at once and refused on every Register with PermissionDenied,
// while other workers keep taking jobs.
func TestDrainAndDenyOutliveSessions(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	addr := h.GRPCAddr().String()
	admin := blacktreev1.NewAdminServiceClient(dialHub(t, h))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	d := dialWorker(t, addr, &blacktreev1.Register{WorkerId: "drained", Name: "dr"}, false)
	if _, err := admin.DrainWorker(ctx, &blacktreev1.DrainWorkerRequest{WorkerId: "dr", Reason: "disk"}); err != nil {
		t.Fatal(err)
	}
	d.next("Drain", func(m *blacktreev1.HubMessage) bool { return m.GetDrain() != nil })
	d.kill()
	d = dialWorker(t, addr, &blacktreev1.Register{WorkerId: "drained", Draining: false}, false)
	if m := d.next("Drain after reconnect", func(m *blacktreev1.HubMessage) bool { return m.GetDrain() != nil }); m.GetDrain().GetReason() != "disk" {
		t.Errorf("Drain after reconnect = %v, want the operator's reason", m)
	}
	if s := h.workerState("drained"); s != stateDraining {
		t.Errorf("reconnected drained worker state = %v, want draining", s)
	}

	v := dialWorker(t, addr, &blacktreev1.Register{WorkerId: "victim"}, false)
	resp, err := admin.DenyWorker(ctx, &blacktreev1.DenyWorkerRequest{WorkerId: "victim", Reason: "stolen token"})
	if err != nil || !resp.GetSessionEnded() || resp.GetWorkerId() != "victim" {
		t.Fatalf("DenyWorker(victim) = %v, %v, want its session ended", resp, err)
	}
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the denied worker's stream did not end")
	}
	conn := dialAddr(t, addr)
	for range 3 {
		_, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: "victim", Slots: 1})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "stolen token") {
			t.Fatalf("Register of a denied worker = %v, want PermissionDenied with the reason", err)
		}
	}
	// A worker id never seen yet can be denied ahead of time.
	if _, err := admin.DenyWorker(ctx, &blacktreev1.DenyWorkerRequest{WorkerId: "future"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: "future", Slots: 1}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Register of a worker denied ahead = %v, want PermissionDenied", err)
	}
	if got := counterValue(h.metrics.registerRefusals.WithLabelValues(refusedDenied)); got != 4 {
		t.Errorf("register_refused_total{reason=denied} = %v, want 4", got)
	}
	if got := h.manager.deniedCount(); got != 2 {
		t.Errorf("denied workers = %d, want 2", got)
	}

	// Jobs go to the one worker that is neither drained nor denied.
	ok := dialWorker(t, addr, &blacktreev1.Register{WorkerId: "ok"}, true)
	_ = ok
	e.publish(validJob("dd-1"))
	if r := e.waitStatus("dd-1")["dd-1"]; r.GetWorkerId() != "ok" {
		t.Errorf("dd-1 ran on %q, want ok", r.GetWorkerId())
	}
}
