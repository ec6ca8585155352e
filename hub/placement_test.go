package hub

import (
	"fmt"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Through the real broker and gRPC: spread hands three jobs to two idle
// 3-slot workers 2 + 1, binpack gives all three to one of them.
func TestPlacement(t *testing.T) {
	for _, tc := range []struct {
		name      string
		placement Placement
		wantMax   int // RunJobs the busier worker gets
	}{
		{name: "spread", placement: PlacementSpread, wantMax: 2},
		{name: "binpack", placement: PlacementBinpack, wantMax: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			h := e.startHub(func(c *Config) { c.Placement = tc.placement })
			ws := []*fakeWorker{
				dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1", Slots: 3}, false),
				dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w2", Slots: 3}, false),
			}
			ids := make([]string, 3)
			for i := range ids {
				ids[i] = fmt.Sprintf("job-%s-%d", tc.name, i)
				// One at a time, so that each is placed knowing where the
				// previous one went.
				e.publish(validJob(ids[i]))
				eventually(t, 5*time.Second, ids[i]+" offered", func() bool { return h.jobState(ids[i]) == jobOffered })
			}
			// Every offer is made; wait for its RunJob to arrive.
			got := map[string]int{}
			deadline := time.After(10 * time.Second)
			for got["w1"]+got["w2"] < len(ids) {
				select {
				case m := <-ws[0].frames:
					if m.GetRunJob() != nil {
						got["w1"]++
					}
				case m := <-ws[1].frames:
					if m.GetRunJob() != nil {
						got["w2"]++
					}
				case <-deadline:
					t.Fatalf("RunJobs per worker = %v after 10s, want %d in all", got, len(ids))
				}
			}
			if max(got["w1"], got["w2"]) != tc.wantMax {
				t.Errorf("RunJobs per worker = %v, want %d on the busier worker", got, tc.wantMax)
			}
		})
	}
}
