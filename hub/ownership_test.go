package hub

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// docs/protocol.md#ownership: a worker with a valid credential of its own
// tries to take over another worker. Each attempt is refused, and the
// honest worker keeps its session, its job and gets the next one.
func TestOwnershipRefusesAnotherCredential(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.Credential = credentialFromMetadata })
	addr := h.GRPCAddr().String()
	honest, err := dialWorkerAs(t, addr, "cred-honest", &blacktreev1.Register{WorkerId: "honest"}, false)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(validJob("job-1"))
	honest.accept(honest.expectRunJob().GetJobId())
	eventually(t, 5*time.Second, "job-1 running", func() bool { return h.jobState("job-1") == jobRunning })
	session := h.sessionOf("honest")
	refusals := func(reason string) float64 { return counterValue(h.metrics.refused.WithLabelValues(reason)) }

	// Impersonation: the honest id with another credential, also claiming
	// its running job.
	_, err = dialWorkerAs(t, addr, "cred-evil", &blacktreev1.Register{WorkerId: "honest",
		RunningJobs: []*blacktreev1.RunningJob{{JobId: "job-1"}}}, false)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Register of another credential's id: err = %v, want PermissionDenied", err)
	}
	if got := refusals(refusedIdentity); got != 1 {
		t.Errorf("identity refusals = %v, want 1", got)
	}

	// Under an id of its own: claim the job, accept it, forge its result,
	// and report a job nobody dispatched.
	evil, err := dialWorkerAs(t, addr, "cred-evil", &blacktreev1.Register{WorkerId: "evil",
		RunningJobs: []*blacktreev1.RunningJob{{JobId: "job-1", DispatchTicket: ticketOf("honest", "job-1")}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	evil.next("CancelJob job-1", func(m *blacktreev1.HubMessage) bool { return m.GetCancelJob().GetJobId() == "job-1" })
	evil.accept("job-1")
	evil.next("CancelJob job-1", func(m *blacktreev1.HubMessage) bool { return m.GetCancelJob().GetJobId() == "job-1" })
	forged := func(id, ticket string) {
		evil.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{
			Response:       &blacktreev1.JobResponse{JobId: id, Success: true, ImageUrl: "evil.example/pwned:latest", WorkerId: "honest"},
			DispatchTicket: ticket}}})
	}
	forged("job-1", ticketOf("honest", "job-1"))
	evil.expectResultAck("job-1") // refused, and told so that it stops
	forged("ghost", "")
	evil.expectResultAck("ghost")
	if got, want := refusals(refusedNotOwner), 3.0; got != want { // the claim, the accept, the result
		t.Errorf("not-owner refusals = %v, want %v", got, want)
	}
	if got := refusals(refusedNeverDispatched); got != 1 {
		t.Errorf("never-dispatched refusals = %v, want 1", got)
	}
	if st, s := h.jobState("job-1"), h.sessionOf("honest"); st != jobRunning || s != session {
		t.Fatalf("after the attack: job-1 %v on session %q, want RUNNING on %q", st, s, session)
	}

	// The honest result is the one published, under the hub's worker id.
	honest.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{
		Response: &blacktreev1.JobResponse{JobId: "job-1", Success: true, ImageUrl: "reg.example/img:1", WorkerId: "somebody-else"}}}})
	honest.expectResultAck("job-1")
	got := e.waitStatus("job-1")["job-1"]
	if got.GetImageUrl() != "reg.example/img:1" || got.GetWorkerId() != "honest" {
		t.Errorf("status = %v, want the honest result with workerId honest", got)
	}
	// The next job reaches the honest worker; the refused ghost never
	// reached the status queue (one status so far, then this one).
	e.publish(validJob("job-2"))
	if id := honest.expectRunJob().GetJobId(); id != "job-2" {
		t.Fatalf("next RunJob = %q, want job-2", id)
	}
	honest.accept("job-2")
	honest.result("job-2", true)
	honest.expectResultAck("job-2")
	if got := e.waitStatus("job-2")["job-2"]; got.GetJobId() != "job-2" {
		t.Fatalf("status = %v, want job-2", got)
	}
	if n := e.depth(e.statusQ); n != 0 {
		t.Errorf("status queue holds %d more messages (a forged result?), want 0", n)
	}

	// The same credential may still replace its own session.
	again, err := dialWorkerAs(t, addr, "cred-honest", &blacktreev1.Register{WorkerId: "honest"}, false)
	if err != nil {
		t.Fatalf("reconnect with the same credential: %v", err)
	}
	if s := h.sessionOf("honest"); s != again.reg.GetSessionId() {
		t.Errorf("session after reconnect = %q, want %q", s, again.reg.GetSessionId())
	}
}

// A stored result goes back only with the ticket of its deployment: one
// of another deployment is refused without ResultAck (the worker keeps it
// for a hub of that deployment), one without a ticket is acked and
// dropped.
func TestResultOfAnotherDeployment(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	other := ticketer{deployment: "dep-other", key: []byte("k")}
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1", UnackedResults: []*blacktreev1.JobResult{
		{Response: &blacktreev1.JobResponse{JobId: "elsewhere", Success: true}, DispatchTicket: other.issue("w1", "", "elsewhere")},
		{Response: &blacktreev1.JobResponse{JobId: "unticketed", Success: true}},
	}}, false)
	if got := w.reg.GetDeploymentId(); got != h.cfg.DeploymentID || got == "" {
		t.Errorf("Registered.deployment_id = %q, want %q", got, h.cfg.DeploymentID)
	}
	w.expectResultAck("unticketed")
	eventually(t, 5*time.Second, "both refused", func() bool {
		return counterValue(h.metrics.refused.WithLabelValues(refusedOtherDeployment)) == 1 &&
			counterValue(h.metrics.refused.WithLabelValues(refusedNeverDispatched)) == 1
	})
	if n := e.depth(e.statusQ); n != 0 {
		t.Errorf("status queue holds %d messages, want 0", n)
	}
}
