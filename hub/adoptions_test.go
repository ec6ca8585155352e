package hub

import (
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// TestAdoptionAnnouncedToReplicas: a worker whose stream to hub A breaks
// registers with hub B, still running its job. B announces the adoption
// over the broker, so A drops the job instead of reporting it lost after
// its grace period: the control plane sees one status, B's result. Before
// adoption announcements it saw A's lost report as well.
func TestAdoptionAnnouncedToReplicas(t *testing.T) {
	const grace = time.Second
	tests := []struct {
		name string
		// aSeesEndFirst: A has orphaned the job before the worker reaches
		// B; otherwise A's session still looks alive when B announces.
		aSeesEndFirst bool
	}{
		{name: "orphaned at A, then adopted by B", aSeesEndFirst: true},
		{name: "adopted by B while A's session still looks alive", aSeesEndFirst: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.startHub(func(c *Config) { c.LostWorkerGrace = grace })
			w := dialWorker(t, a.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "mover"}, false)
			e.publish(validJob("job-moved"))
			w.accept(w.expectRunJob().GetJobId())
			eventually(t, 5*time.Second, "job running on A", func() bool { return a.jobState("job-moved") == jobRunning })
			// B starts only now, so that the job cannot be delivered to it.
			b := e.startHub(func(c *Config) { c.LostWorkerGrace = grace })

			if tc.aSeesEndFirst {
				w.kill()
				eventually(t, 5*time.Second, "job orphaned on A", func() bool { return a.jobState("job-moved") == jobOrphaned })
			}
			w2 := dialWorker(t, b.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "mover",
				RunningJobs: []*blacktreev1.RunningJob{{JobId: "job-moved", DispatchTicket: ticketOf("mover", "job-moved")}}}, false)
			// B sends Registered before it adopts the reported jobs (RunJobs
			// it dispatches at registration must follow Registered); the
			// worker's own frames are read only after both.
			eventually(t, 5*time.Second, "B adopts the running job", func() bool { return b.jobState("job-moved") == jobRunning })
			if !tc.aSeesEndFirst {
				eventually(t, 5*time.Second, "A told of the adoption", func() bool {
					a.dispatcher.mu.Lock()
					defer a.dispatcher.mu.Unlock()
					j := a.dispatcher.jobs["job-moved"]
					return j != nil && j.movedAway
				})
				w.kill()
			}
			eventually(t, 5*time.Second, "A drops the job", func() bool {
				return a.jobState("job-moved") == blacktreev1.JobState_JOB_STATE_UNSPECIFIED
			})
			past := time.NewTimer(2 * grace) // A's grace would have ended
			<-past.C
			if s := e.cp.Statuses("job-moved"); len(s) != 0 {
				t.Fatalf("statuses before the result = %v, want none (A must not report the job lost)", s)
			}
			w2.result("job-moved", true)
			w2.expectResultAck("job-moved")
			if got := e.waitStatus("job-moved")["job-moved"]; !got.GetSuccess() {
				t.Errorf("status = %v, want B's success", got)
			}
			if n := len(e.cp.Statuses("job-moved")); n != 1 {
				t.Errorf("statuses = %d, want 1", n)
			}
			if got := counterValue(a.metrics.lost); got != 0 {
				t.Errorf("A's lost metric = %v, want 0", got)
			}
		})
	}
}
