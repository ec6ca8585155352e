package workeragent

import (
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protover"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

func isProgress(jobID string) func(*blacktreev1.WorkerMessage) bool {
	return func(m *blacktreev1.WorkerMessage) bool { return m.GetJobProgress().GetJobId() == jobID }
}

// A job entering a stage sends JobProgress to a hub that announced
// job-progress, and none to a hub that did not. Both go through the
// control queue, which leaves before the log queue the JobResult takes:
// a progress frame not seen before the result was never sent.
func TestJobProgressOnlyToHubsWithTheFeature(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features []string
		want     bool
	}{
		{name: "announced", features: []string{protover.FeatureDrainRequeue, protover.FeatureJobProgress}, want: true},
		{name: "not announced", features: []string{protover.FeatureDrainRequeue}, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{Features: tc.features})
			g := newGateExec()
			startAgent(t, Config{HubAddrs: []string{hub.Addr}}, stageExec{g})
			s := hub.NextStream(t, wait)
			s.Send(t, fakehub.RunJob(jobReq("prog")))
			s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("prog"))
			waitStarted(t, g, "prog")
			g.release("prog")
			var got []*blacktreev1.JobProgress
			s.WaitFor(t, wait, "JobResult", func(m *blacktreev1.WorkerMessage) bool {
				if p := m.GetJobProgress(); p != nil {
					got = append(got, p)
				}
				return fakehub.IsResult("prog")(m)
			})
			switch {
			case tc.want && (len(got) != 1 || got[0].GetJobId() != "prog" || got[0].GetStage() != blacktreev1.JobStage_JOB_STAGE_BUILD):
				t.Errorf("JobProgress frames before the result = %v, want one: prog in JOB_STAGE_BUILD", got)
			case !tc.want && len(got) != 0:
				t.Errorf("JobProgress frames to a hub without %q = %v, want none", protover.FeatureJobProgress, got)
			}
			s.Send(t, fakehub.Ack("prog"))
		})
	}
}

// After a reconnect to a hub that announces job-progress, the stage of a
// job still running goes out without the job entering a new one.
func TestJobProgressResentAfterReconnect(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	g := newGateExec()
	startAgent(t, Config{HubAddrs: []string{hub.Addr}}, stageExec{g})
	s1 := hub.NextStream(t, wait)
	s1.Send(t, fakehub.RunJob(jobReq("long")))
	s1.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("long"))
	waitStarted(t, g, "long")
	hub.SetFeatures([]string{protover.FeatureJobProgress})
	s1.Kill()

	s2 := hub.NextStream(t, wait)
	if got := s2.Register.GetRunningJobs(); len(got) != 1 || got[0].GetJobId() != "long" {
		t.Fatalf("Register.running_jobs after reconnect = %v, want long", got)
	}
	p := s2.WaitFor(t, wait, "JobProgress for long", isProgress("long")).GetJobProgress()
	if p.GetStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
		t.Errorf("JobProgress after reconnect = %v, want long in JOB_STAGE_BUILD", p)
	}
	g.release("long")
	s2.WaitFor(t, wait, "JobResult", fakehub.IsResult("long"))
	s2.Send(t, fakehub.Ack("long"))
}
