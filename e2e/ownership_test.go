package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
)

// intruder is a second client with a valid worker token of its own,
// speaking WorkerService by hand.
type intruder struct {
	t      *testing.T
	conn   *grpc.ClientConn
	ctx    context.Context
	stream grpc.BidiStreamingClient[blacktreev1.WorkerMessage, blacktreev1.HubMessage]
}

func dialIntruder(t *testing.T, addr, token string) *intruder {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient() = %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	return &intruder{t: t, conn: conn, ctx: ctx}
}

// register opens a stream and sends reg; it returns Registered, or the
// stream's error.
func (in *intruder) register(reg *blacktreev1.Register) (*blacktreev1.Registered, error) {
	stream, err := blacktreev1.NewWorkerServiceClient(in.conn).Connect(in.ctx)
	if err != nil {
		return nil, err
	}
	in.stream = stream
	if err := stream.Send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: reg}}); err != nil {
		return nil, err
	}
	m, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return m.GetRegistered(), nil
}

func (in *intruder) send(m *blacktreev1.WorkerMessage) {
	in.t.Helper()
	if err := in.stream.Send(m); err != nil {
		in.t.Fatalf("intruder send: %v", err)
	}
}

// expect reads frames until one matches (heartbeat-free: the intruder
// session lives far shorter than three heartbeat intervals).
func (in *intruder) expect(what string, match func(*blacktreev1.HubMessage) bool) {
	in.t.Helper()
	for {
		m, err := in.stream.Recv()
		if err != nil {
			in.t.Fatalf("intruder: stream ended waiting for %s: %v", what, err)
		}
		if match(m) {
			return
		}
	}
}

func forgedResult(id string) *blacktreev1.WorkerMessage {
	return &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{
		Response: &blacktreev1.JobResponse{JobId: id, Success: true, ImageUrl: "evil.example/pwned:latest",
			ImageDigest: "sha256:" + strings.Repeat("0", 64)}}}}
}

// TestSecurityMaliciousWorker: over a real hub, an honest worker runs a
// job while a client with its own valid token impersonates the honest
// worker's id, claims its running job, accepts it, forges its result,
// sends a result for a job nobody dispatched and races the honest worker
// to accept the next job offered to it. Each is refused; the honest
// worker keeps its one session and its jobs, only its results are
// published, and the next job reaches it (docs/SECURITY.md#identity,
// docs/protocol.md#ownership).
func TestSecurityMaliciousWorker(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	tokHonest, tokIntruder := "tok-honest-"+randomHex(12), "tok-intruder-"+randomHex(12)
	writeFile(t, e.tokensFile, "honest:"+tokHonest+"\nintruder:"+tokIntruder+"\n")
	honestToken := filepath.Join(e.dir, "token-honest")
	writeFile(t, honestToken, tokHonest+"\n")
	h := e.startHub()
	admin, actx := e.adminClient(h.GRPCAddr, nil)
	honest := e.startWorkerRaw("honest", "--hub", h.GRPCAddr, "--insecure", "--token-file", honestToken,
		"--executor", "noop", "--noop-delay", "6s", "--slots", "2")
	ids := waitLive(t, actx, admin, []string{"honest"}, 30*time.Second)
	honestID := ids["honest"]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.publish(ctx, "owned-1")
	waitAccepted(t, e, h, honest, "owned-1")

	in := dialIntruder(t, h.GRPCAddr, tokIntruder)
	// 1. Impersonation of the honest id, claiming its running job.
	_, err := in.register(&blacktreev1.Register{WorkerId: honestID, Name: "honest", Slots: 1,
		RunningJobs: []*blacktreev1.RunningJob{{JobId: "owned-1"}}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "another credential") {
		t.Fatalf("Register as the honest worker's id = %v, want PermissionDenied naming another credential", err)
	}
	// 2. Under an id of its own (draining, so it is offered nothing):
	// claim the running job, accept it, forge its result, and send a
	// result for a job nobody dispatched.
	if _, err := in.register(&blacktreev1.Register{WorkerId: "intruder-" + randomHex(4), Slots: 1, Draining: true,
		RunningJobs: []*blacktreev1.RunningJob{{JobId: "owned-1"}}}); err != nil {
		t.Fatalf("intruder Register under its own id = %v", err)
	}
	isCancel := func(id string) func(*blacktreev1.HubMessage) bool {
		return func(m *blacktreev1.HubMessage) bool { return m.GetCancelJob().GetJobId() == id }
	}
	isAck := func(id string) func(*blacktreev1.HubMessage) bool {
		return func(m *blacktreev1.HubMessage) bool { return m.GetResultAck().GetJobId() == id }
	}
	in.expect("CancelJob for the claimed job", isCancel("owned-1"))
	in.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobAccepted{JobAccepted: &blacktreev1.JobAccepted{JobId: "owned-1"}}})
	in.expect("CancelJob for the accepted job", isCancel("owned-1"))
	in.send(forgedResult("owned-1"))
	in.expect("ResultAck refusing the forged result", isAck("owned-1"))
	ghost := "never-dispatched-" + randomHex(4)
	in.send(forgedResult(ghost))
	in.expect("ResultAck refusing the result nobody dispatched", isAck(ghost))

	// 3. The next job, offered to the honest worker, while the intruder
	// keeps accepting it.
	e.publish(ctx, "owned-2")
	err = cluster.Poll(ctx, 5*time.Millisecond, func() bool {
		in.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobAccepted{JobAccepted: &blacktreev1.JobAccepted{JobId: "owned-2"}}})
		resp, err := admin.ListJobs(actx, &blacktreev1.ListJobsRequest{})
		if err != nil {
			return false
		}
		for _, j := range resp.GetJobs() {
			if j.GetJobId() == "owned-2" && j.GetState() == blacktreev1.JobState_JOB_STATE_RUNNING {
				if j.GetWorkerId() != honestID {
					t.Errorf("owned-2 runs on %q, want the honest worker %q", j.GetWorkerId(), honestID)
				}
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("owned-2 never ran: %v%s", err, e.diagnose(h))
	}

	// The honest worker kept its one session and both jobs; only its
	// results are published, under its id.
	got, err := e.cp.WaitFor(ctx, "owned-1", "owned-2")
	if err != nil {
		t.Fatalf("WaitFor() = %v%s", err, e.diagnose(h))
	}
	for id, r := range got {
		if !r.GetSuccess() || r.GetWorkerId() != honestID || strings.Contains(r.GetImageUrl(), "evil") {
			t.Errorf("status %s = %v, want the honest worker's success", id, r)
		}
	}
	e.publish(ctx, "owned-3")
	got, err = e.cp.WaitFor(ctx, "owned-3")
	if err != nil {
		t.Fatalf("WaitFor(owned-3) = %v%s", err, e.diagnose(h))
	}
	if r := got["owned-3"]; r.GetWorkerId() != honestID || !r.GetSuccess() {
		t.Errorf("status owned-3 = %v, want the honest worker's success", r)
	}
	for _, id := range []string{"owned-1", "owned-2", "owned-3", ghost} {
		want := 1
		if id == ghost {
			want = 0
		}
		if n := len(e.cp.Statuses(id)); n != want {
			t.Errorf("statuses for %s = %d, want %d", id, n, want)
		}
	}
	for _, b := range e.cp.Bodies() {
		if strings.Contains(string(b), "evil.example") {
			t.Errorf("a forged status was published: %s", b)
		}
	}
	if n := strings.Count(honest.Output(), ": registered:"); n != 1 {
		t.Errorf("honest worker registered %d times, want once (its session kept)", n)
	}
	metrics := metricsText(t, h)
	for _, want := range []string{
		`blacktree_worker_frames_refused_total{reason="identity_taken"} 1`,
		`blacktree_worker_frames_refused_total{reason="never_dispatched"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, `blacktree_worker_frames_refused_total{reason="not_owner"} 0`) {
		t.Errorf("/metrics counts no not_owner refusal, want the claim, the accepts and the forged result")
	}
	record(t, "malicious worker: impersonation, claim, accept, forged and unsolicited results refused; honest worker kept its session")
}
