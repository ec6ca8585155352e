package python_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protover"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// requirePython fails the test when Debian's python3-grpcio is missing.
func requirePython(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		t.Fatalf("/usr/bin/python3 with python3-grpcio and python3-protobuf is needed: %v\n%s\ninstall them with: bash scripts/ensure-tools", err, out)
	}
}

func workerScript(t *testing.T) string {
	return filepath.Join(repoRoot(t), "clients", "python", "worker.py")
}

// TestWorkerProtocol drives worker.py frame by frame from a fake hub:
// Register, Heartbeat, RunJob → JobAccepted → JobResult, idempotent RunJob,
// and re-sending an unacknowledged result after a broken stream.
func TestWorkerProtocol(t *testing.T) {
	requirePython(t)
	hub := fakehub.Start(t, fakehub.Options{Token: "tok-1", HeartbeatInterval: 200 * time.Millisecond})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := start(t, "python worker", "/usr/bin/python3", "-B", workerScript(t),
		"--hub", hub.Addr, "--token-file", tokenFile, "--insecure", "--jobs", "1", "--worker-id", "py-proto", "--name", "proto")

	s := hub.NextStream(t, 30*time.Second)
	reg := s.Register
	if reg.GetWorkerId() != "py-proto" || reg.GetName() != "proto" || reg.GetSlots() != 1 || reg.GetVersion() == "" {
		t.Errorf("Register = %v, want worker_id py-proto, name proto, slots 1, a version", reg)
	}
	if reg.GetProtocolVersion() != protover.Current || !slices.Contains(reg.GetFeatures(), protover.FeatureDrainReject) {
		t.Errorf("Register protocol_version = %d, features = %v; want %d and %q", reg.GetProtocolVersion(), reg.GetFeatures(), protover.Current, protover.FeatureDrainReject)
	}
	s.WaitFor(t, 10*time.Second, "heartbeat", func(m *blacktreev1.WorkerMessage) bool { return m.GetHeartbeat() != nil })

	job := &blacktreev1.JobRequest{JobId: "j-1", RepoUrl: "acme/api", ImageName: "acme/api:7"}
	const ticket = "dep-x.bWFj"
	s.Send(t, fakehub.RunJobTicket(job, ticket))
	s.WaitFor(t, 10*time.Second, "JobAccepted j-1", fakehub.IsAccepted("j-1"))
	result := s.WaitFor(t, 10*time.Second, "JobResult j-1", fakehub.IsResult("j-1")).GetJobResult()
	if got := result.GetDispatchTicket(); got != ticket {
		t.Errorf("JobResult.dispatch_ticket = %q, want RunJob's %q", got, ticket)
	}
	res := result.GetResponse()
	if !res.GetSuccess() || res.GetImageUrl() != "acme/api:7" || res.GetLogs() != "python worker" || res.GetWorkerId() != "py-proto" || res.GetError() != "" {
		t.Errorf("JobResult = %v, want success, image acme/api:7, logs \"python worker\", worker py-proto", res)
	}

	// RunJob again for a job it holds a result for: accepted again, same
	// result, not run twice.
	s.Send(t, fakehub.RunJob(job))
	s.WaitFor(t, 10*time.Second, "second JobAccepted j-1", fakehub.IsAccepted("j-1"))
	again := s.WaitFor(t, 10*time.Second, "second JobResult j-1", fakehub.IsResult("j-1")).GetJobResult().GetResponse()
	if !proto.Equal(again, res) {
		t.Errorf("repeated JobResult = %v, want the first one %v", again, res)
	}

	// Break the stream before ResultAck: the worker reconnects and re-sends
	// the result in Register.
	s.Kill()
	s2 := hub.NextStream(t, 30*time.Second)
	if got := s2.Register.GetUnackedResults(); len(got) != 1 || !proto.Equal(got[0].GetResponse(), res) || got[0].GetDispatchTicket() != ticket {
		t.Fatalf("Register.unacked_results after reconnect = %v, want the j-1 result", got)
	}
	s2.Send(t, fakehub.Ack("j-1"))
	select {
	case <-w.Done():
		if code := w.ExitCode(); code != 0 {
			t.Errorf("worker exit = %d, want 0 after --jobs 1 acknowledged", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("worker did not exit after its result was acknowledged:\n%s", w.Output())
	}
}

func TestWorkerDrainRejectsNewJobs(t *testing.T) {
	requirePython(t)
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: 5 * time.Second})
	start(t, "python worker", "/usr/bin/python3", "-B", workerScript(t), "--hub", hub.Addr, "--token", "x", "--insecure")
	s := hub.NextStream(t, 30*time.Second)
	s.Send(t, fakehub.Drain("test"))
	s.WaitFor(t, 10*time.Second, "draining heartbeat", func(m *blacktreev1.WorkerMessage) bool { return m.GetHeartbeat().GetDraining() })
	s.Send(t, fakehub.RunJob(&blacktreev1.JobRequest{JobId: "j-2", RepoUrl: "a/b", ImageName: "x:1"}))
	rej := s.WaitFor(t, 10*time.Second, "JobRejected j-2", fakehub.IsRejected("j-2")).GetJobRejected()
	if rej.GetReason() != blacktreev1.RejectReason_REJECT_REASON_DRAINING {
		t.Errorf("JobRejected.reason = %v, want DRAINING", rej.GetReason())
	}
}

func TestWorkerBadTokenExits1(t *testing.T) {
	requirePython(t)
	hub := fakehub.Start(t, fakehub.Options{Token: "right"})
	w := start(t, "python worker", "/usr/bin/python3", "-B", workerScript(t), "--hub", hub.Addr, "--token", "wrong", "--insecure")
	select {
	case <-w.Done():
		if code := w.ExitCode(); code != 1 {
			t.Errorf("worker exit = %d, want 1 for a refused token:\n%s", code, w.Output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("worker with a bad token did not exit:\n%s", w.Output())
	}
}
