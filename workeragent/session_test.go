package workeragent

import (
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

func TestHappyPath(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{Token: "worker-token", HeartbeatInterval: 50 * time.Millisecond})
	dir := t.TempDir()
	r := startAgent(t, Config{
		HubAddrs: []string{hub.Addr}, Token: "worker-token", Name: "w1",
		Labels: map[string]string{"arch": "amd64"}, Slots: 2, StateDir: dir,
	}, executor.Noop{})
	s := hub.NextStream(t, wait)

	reg := s.Register
	if got, want := reg.GetWorkerId(), r.agent.WorkerID(); got != want || got == "" {
		t.Errorf("Register.worker_id = %q, want %q", got, want)
	}
	if got := reg.GetName(); got != "w1" {
		t.Errorf("Register.name = %q, want w1", got)
	}
	if got := reg.GetSlots(); got != 2 {
		t.Errorf("Register.slots = %d, want 2", got)
	}
	if got := reg.GetLabels()["arch"]; got != "amd64" {
		t.Errorf("Register.labels[arch] = %q, want amd64", got)
	}
	if reg.GetVersion() == "" || reg.GetDraining() || len(reg.GetRunningJobs()) != 0 || len(reg.GetUnackedResults()) != 0 {
		t.Errorf("Register = %v, want a version, not draining, no jobs, no results", reg)
	}
	if got := s.MD.Get("authorization"); !slices.Equal(got, []string{"Bearer worker-token"}) {
		t.Errorf("authorization metadata = %q, want [Bearer worker-token]", got)
	}

	s.WaitFor(t, wait, "heartbeat", func(m *blacktreev1.WorkerMessage) bool { return m.GetHeartbeat() != nil })

	s.Send(t, fakehub.RunJob(jobReq("job-1")))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("job-1"))
	var logs []*blacktreev1.JobLog
	res := s.WaitFor(t, wait, "JobResult", func(m *blacktreev1.WorkerMessage) bool {
		if l := m.GetJobLog(); l != nil {
			logs = append(logs, l)
		}
		return fakehub.IsResult("job-1")(m)
	}).GetJobResult().GetResponse()
	if !res.GetSuccess() || res.GetImageUrl() != "myapp:latest" || res.GetError() != "" {
		t.Errorf("JobResult = %v, want success with image myapp:latest", res)
	}
	if got := res.GetWorkerId(); got != r.agent.WorkerID() {
		t.Errorf("JobResult.worker_id = %q, want %q", got, r.agent.WorkerID())
	}
	if res.GetStartedAt() == nil || res.GetFinishedAt() == nil {
		t.Errorf("JobResult timestamps = %v, %v, want both set", res.GetStartedAt(), res.GetFinishedAt())
	}
	if len(logs) == 0 || logs[0].GetSeq() != 0 || logs[0].GetJobId() != "job-1" {
		t.Errorf("JobLog frames = %v, want a first chunk of job-1 with seq 0", logs)
	}
	// Unacknowledged past PersistResultsAfter (default 200ms): on disk.
	eventually(t, "result file written while the ack is late", func() bool { return resultFiles(t, dir) == 1 })
	s.Send(t, fakehub.Ack("job-1"))
	eventually(t, "result file removed after ResultAck", func() bool { return resultFiles(t, dir) == 0 })
}

func TestFailover(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	hub := fakehub.Start(t, fakehub.Options{})
	startAgent(t, Config{HubAddrs: []string{dead, hub.Addr}}, executor.Noop{})
	hub.NextStream(t, wait)
}

func TestStreamBrokenMidJob(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	g := newGateExec()
	startAgent(t, Config{HubAddrs: []string{hub.Addr}}, g)

	s1 := hub.NextStream(t, wait)
	s1.Send(t, fakehub.RunJob(jobReq("job-2")))
	s1.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("job-2"))
	waitStarted(t, g, "job-2")
	s1.Kill()

	s2 := hub.NextStream(t, wait)
	if got := s2.Register.GetRunningJobs(); len(got) != 1 || got[0].GetJobId() != "job-2" || got[0].GetStartedAt() == nil {
		t.Fatalf("Register.running_jobs after reconnect = %v, want job-2 with started_at", got)
	}
	g.release("job-2")
	s2.WaitFor(t, wait, "JobResult", fakehub.IsResult("job-2"))

	// Not acknowledged: the next stream re-sends it, once.
	s2.Kill()
	s3 := hub.NextStream(t, wait)
	if got := s3.Register.GetUnackedResults(); len(got) != 1 || got[0].GetResponse().GetJobId() != "job-2" || !got[0].GetResponse().GetSuccess() {
		t.Fatalf("Register.unacked_results = %v, want job-2's successful result once", got)
	}
	if got := s3.Register.GetRunningJobs(); len(got) != 0 {
		t.Errorf("Register.running_jobs = %v, want none", got)
	}
	s3.Send(t, fakehub.Ack("job-2"))
	// Register carried it: it is not sent again as a JobResult, and once
	// acknowledged it is gone for good.
	s3.WaitFor(t, wait, "heartbeat", func(m *blacktreev1.WorkerMessage) bool {
		if fakehub.IsResult("job-2")(m) {
			t.Errorf("JobResult for job-2 re-sent on the stream whose Register carried it")
		}
		return m.GetHeartbeat() != nil
	})
	s3.Kill()
	s4 := hub.NextStream(t, wait)
	if got := s4.Register.GetUnackedResults(); len(got) != 0 {
		t.Errorf("Register.unacked_results after ack = %v, want none", got)
	}
	if runs, _ := g.stats("job-2"); runs != 1 {
		t.Errorf("executor runs of job-2 = %d, want 1", runs)
	}
}

func TestHubReplacedMidJob(t *testing.T) {
	hub1 := fakehub.Start(t, fakehub.Options{})
	g := newGateExec()
	startAgent(t, Config{HubAddrs: []string{hub1.Addr}}, g)

	s1 := hub1.NextStream(t, wait)
	s1.Send(t, fakehub.RunJob(jobReq("job-3")))
	s1.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("job-3"))
	waitStarted(t, g, "job-3")
	hub1.Stop()
	g.release("job-3") // the result is produced while no hub is there

	hub2 := fakehub.Start(t, fakehub.Options{Addr: hub1.Addr})
	s2 := hub2.NextStream(t, wait)
	var res *blacktreev1.JobResponse
	for _, r := range s2.Register.GetUnackedResults() {
		if r.GetResponse().GetJobId() == "job-3" {
			res = r.GetResponse()
		}
	}
	if res == nil {
		// The job may have finished after Register was built.
		res = s2.WaitFor(t, wait, "JobResult", fakehub.IsResult("job-3")).GetJobResult().GetResponse()
	}
	if !res.GetSuccess() {
		t.Errorf("job-3 result = %v, want success", res)
	}
	s2.Send(t, fakehub.Ack("job-3"))
}

func TestSlotsRespected(t *testing.T) {
	tests := []struct {
		name  string
		slots int
		jobs  int
	}{
		{name: "one slot", slots: 1, jobs: 6},
		{name: "three slots", slots: 3, jobs: 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{})
			g := newGateExec()
			startAgent(t, Config{HubAddrs: []string{hub.Addr}, Slots: tt.slots}, g)
			s := hub.NextStream(t, wait)

			ids := make([]string, tt.jobs)
			for i := range ids {
				ids[i] = "load-" + string(rune('a'+i))
				s.Send(t, fakehub.RunJob(jobReq(ids[i])))
			}
			// Gated jobs never finish: exactly `slots` are accepted.
			var accepted, rejected []string
			for len(accepted)+len(rejected) < tt.jobs {
				m := s.WaitFor(t, wait, "JobAccepted/JobRejected", func(m *blacktreev1.WorkerMessage) bool {
					return m.GetJobAccepted() != nil || m.GetJobRejected() != nil
				})
				if a := m.GetJobAccepted(); a != nil {
					accepted = append(accepted, a.GetJobId())
				} else {
					if got := m.GetJobRejected().GetReason(); got != blacktreev1.RejectReason_REJECT_REASON_NO_CAPACITY {
						t.Errorf("JobRejected.reason = %v, want NO_CAPACITY", got)
					}
					rejected = append(rejected, m.GetJobRejected().GetJobId())
				}
			}
			if len(accepted) != tt.slots {
				t.Fatalf("accepted %d of %d jobs, want %d (the slot count)", len(accepted), tt.jobs, tt.slots)
			}

			// Open the gates and re-offer each rejected job as results
			// come in, the way a hub would.
			g.openAll()
			done := map[string]bool{}
			for len(done) < tt.jobs {
				m := s.WaitFor(t, wait, "frame", func(m *blacktreev1.WorkerMessage) bool {
					return m.GetJobResult() != nil || m.GetJobRejected() != nil
				})
				if r := m.GetJobResult(); r != nil {
					id := r.GetResponse().GetJobId()
					if done[id] {
						t.Errorf("second result for %s", id)
					}
					done[id] = true
					s.Send(t, fakehub.Ack(id))
					if len(rejected) > 0 {
						s.Send(t, fakehub.RunJob(jobReq(rejected[0])))
						rejected = rejected[1:]
					}
				} else {
					rejected = append(rejected, m.GetJobRejected().GetJobId())
				}
			}
			for _, id := range ids {
				runs, maxc := g.stats(id)
				if runs != 1 {
					t.Errorf("executor runs of %s = %d, want 1", id, runs)
				}
				if maxc > tt.slots {
					t.Errorf("max concurrent executions = %d, want <= %d", maxc, tt.slots)
				}
			}
		})
	}
}

func TestDuplicateRunJob(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	g := newGateExec()
	startAgent(t, Config{HubAddrs: []string{hub.Addr}, Slots: 2}, g)
	s := hub.NextStream(t, wait)

	s.Send(t, fakehub.RunJob(jobReq("dup")))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("dup"))
	waitStarted(t, g, "dup")
	s.Send(t, fakehub.RunJob(jobReq("dup"))) // while running
	s.WaitFor(t, wait, "second JobAccepted", fakehub.IsAccepted("dup"))
	g.release("dup")
	s.WaitFor(t, wait, "JobResult", fakehub.IsResult("dup"))
	s.Send(t, fakehub.RunJob(jobReq("dup"))) // result held, not yet acked
	s.WaitFor(t, wait, "third JobAccepted", fakehub.IsAccepted("dup"))
	if runs, _ := g.stats("dup"); runs != 1 {
		t.Errorf("executor runs of dup = %d, want 1", runs)
	}
	s.Send(t, fakehub.Ack("dup"))
}

func TestCancelJob(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	startAgent(t, Config{HubAddrs: []string{hub.Addr}}, executor.Noop{Delay: time.Hour})
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("long")))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("long"))
	s.Send(t, fakehub.Cancel("long", "operator said so"))
	res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("long")).GetJobResult().GetResponse()
	if res.GetSuccess() {
		t.Fatalf("cancelled job result = %v, want failure", res)
	}
	if got, want := res.GetError(), "cancelled: operator said so"; got != want {
		t.Errorf("cancelled job error = %q, want %q", got, want)
	}
	if got := res.GetFailedStage(); got != blacktreev1.JobStage_JOB_STAGE_CANCELLED {
		t.Errorf("cancelled job stage = %v, want JOB_STAGE_CANCELLED", got)
	}
	s.Send(t, fakehub.Ack("long"))
}

// TestJobTimeout checks that a job running past its limit fails with the
// limit named: the agent's JobTimeout, or the request's timeoutSeconds.
func TestJobTimeout(t *testing.T) {
	tests := []struct {
		name       string
		jobTimeout time.Duration
		requestSec uint32
		want       string
	}{
		{name: "agent limit", jobTimeout: 300 * time.Millisecond, want: "cancelled: timed out after 300ms"},
		{name: "request limit", jobTimeout: time.Hour, requestSec: 1, want: "cancelled: timed out after 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{})
			startAgent(t, Config{HubAddrs: []string{hub.Addr}, JobTimeout: tt.jobTimeout}, executor.Noop{Delay: time.Hour})
			s := hub.NextStream(t, wait)
			req := jobReq("slow")
			req.TimeoutSeconds = tt.requestSec
			s.Send(t, fakehub.RunJob(req))
			res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("slow")).GetJobResult().GetResponse()
			if res.GetSuccess() {
				t.Fatalf("timed-out job result = %v, want failure", res)
			}
			if got := res.GetError(); got != tt.want {
				t.Errorf("timed-out job error = %q, want %q", got, tt.want)
			}
			s.Send(t, fakehub.Ack("slow"))
		})
	}
}

func TestDrain(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
	g := newGateExec()
	startAgent(t, Config{HubAddrs: []string{hub.Addr}, Slots: 2}, g)
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("before")))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("before"))
	waitStarted(t, g, "before")

	s.Send(t, fakehub.Drain("maintenance"))
	// The heartbeat interval is an hour: this one is sent because of Drain.
	hb := s.WaitFor(t, wait, "draining heartbeat", func(m *blacktreev1.WorkerMessage) bool { return m.GetHeartbeat() != nil }).GetHeartbeat()
	if !hb.GetDraining() || !slices.Equal(hb.GetRunningJobIds(), []string{"before"}) {
		t.Errorf("Heartbeat = %v, want draining with running job before", hb)
	}
	s.Send(t, fakehub.RunJob(jobReq("after")))
	rej := s.WaitFor(t, wait, "JobRejected", fakehub.IsRejected("after")).GetJobRejected()
	if got := rej.GetReason(); got != blacktreev1.RejectReason_REJECT_REASON_DRAINING {
		t.Errorf("JobRejected.reason = %v, want DRAINING", got)
	}
	g.release("before")
	res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("before")).GetJobResult().GetResponse()
	if !res.GetSuccess() {
		t.Errorf("result of the running job = %v, want success", res)
	}
	s.Send(t, fakehub.Ack("before"))
	if runs, _ := g.stats("after"); runs != 0 {
		t.Errorf("executor runs of after = %d, want 0", runs)
	}
	// A reconnect while draining says so in Register.
	s.Kill()
	if s2 := hub.NextStream(t, wait); !s2.Register.GetDraining() {
		t.Errorf("Register.draining after Drain = false, want true")
	}
}

func TestInvalidJobFailsValidation(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	g := newGateExec()
	startAgent(t, Config{HubAddrs: []string{hub.Addr}}, g)
	s := hub.NextStream(t, wait)
	req := jobReq("bad")
	req.DockerfilePath = "../../etc/passwd"
	s.Send(t, fakehub.RunJob(req))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("bad"))
	res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("bad")).GetJobResult().GetResponse()
	if res.GetSuccess() || res.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_VALIDATE {
		t.Errorf("invalid job result = %v, want failure at stage VALIDATE", res)
	}
	if runs, _ := g.stats("bad"); runs != 0 {
		t.Errorf("executor runs of an invalid job = %d, want 0", runs)
	}
	s.Send(t, fakehub.Ack("bad"))
}

func TestInitialConnectTimeout(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	r := startAgent(t, Config{HubAddrs: []string{dead}, InitialConnectTimeout: 300 * time.Millisecond}, executor.Noop{})
	select {
	case err := <-r.errc:
		r.errc <- err
		if !errors.Is(err, ErrNoHub) {
			t.Errorf("Run() = %v, want ErrNoHub", err)
		}
	case <-time.After(wait):
		t.Fatalf("Run() did not give up within %s", wait)
	}
}

func TestLabelMismatchRejected(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	g := newGateExec()
	startAgent(t, Config{HubAddrs: []string{hub.Addr}, Labels: map[string]string{"arch": "amd64"}}, g)
	s := hub.NextStream(t, wait)
	req := jobReq("arm-only")
	req.WorkerLabels = map[string]string{"arch": "arm64"}
	s.Send(t, fakehub.RunJob(req))
	rej := s.WaitFor(t, wait, "JobRejected", fakehub.IsRejected("arm-only")).GetJobRejected()
	if got := rej.GetReason(); got != blacktreev1.RejectReason_REJECT_REASON_UNSUPPORTED {
		t.Errorf("JobRejected.reason = %v, want UNSUPPORTED", got)
	}
}

// docs/protocol.md#ownership: a result goes back with its job's dispatch
// ticket, and only to hubs of the deployment the ticket names.
func TestResultsStayInTheirDeployment(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: 50 * time.Millisecond, DeploymentID: "dep-a"})
	startAgent(t, Config{HubAddrs: []string{hub.Addr}, Name: "w1", Slots: 1, StateDir: t.TempDir()}, executor.Noop{})
	s := hub.NextStream(t, wait)
	const ticket = "dep-a.bWFj"
	s.Send(t, fakehub.RunJobTicket(jobReq("job-1"), ticket))
	res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("job-1")).GetJobResult()
	if got := res.GetDispatchTicket(); got != ticket {
		t.Fatalf("JobResult.dispatch_ticket = %q, want %q", got, ticket)
	}

	// Unacknowledged, then the worker reaches a hub of another deployment:
	// the result stays with the worker.
	hub.SetDeploymentID("dep-b")
	s.Kill()
	s2 := hub.NextStream(t, wait)
	if got := s2.Register.GetUnackedResults(); len(got) != 0 {
		t.Fatalf("Register.unacked_results to another deployment = %v, want none", got)
	}
	for range 3 { // a few heartbeats: the result would have been queued before them
		s2.WaitFor(t, wait, "heartbeat", func(m *blacktreev1.WorkerMessage) bool {
			if fakehub.IsResult("job-1")(m) {
				t.Fatalf("job-1's result sent to a hub of another deployment")
			}
			return m.GetHeartbeat() != nil
		})
	}

	// Back to its own deployment: re-sent there, ticket and all.
	hub.SetDeploymentID("dep-a")
	s2.Kill()
	s3 := hub.NextStream(t, wait)
	res = s3.WaitFor(t, wait, "JobResult", fakehub.IsResult("job-1")).GetJobResult()
	if got := res.GetDispatchTicket(); got != ticket {
		t.Errorf("re-sent JobResult.dispatch_ticket = %q, want %q", got, ticket)
	}
}
