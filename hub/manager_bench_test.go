package hub

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// BenchmarkPick measures one pick (and the release that undoes it) in a
// fleet of 10,000 8-slot workers: with an idle worker available, and with
// every worker partly busy (each running 1–7 jobs), under both placements.
// The partly busy fleet is the case pick scans (hub/placement.go).
//
//	go test -run xxx -bench BenchmarkPick -benchtime 2000x ./hub/
func BenchmarkPick(b *testing.B) {
	const workers, slots = 10000, 8
	for _, p := range []Placement{PlacementSpread, PlacementBinpack} {
		for _, busy := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/partly_busy=%v", p, busy), func(b *testing.B) {
				m := newWorkerManager(Config{HeartbeatInterval: time.Hour, MissedHeartbeats: 3, DeadRetention: time.Hour, Placement: p},
					hclog.NewNullLogger())
				defer m.close()
				ws := make([]*Worker, workers)
				for i := range ws {
					ws[i] = testWorker(fmt.Sprintf("w%05d", i), slots, nil)
					m.register(ws[i], false)
					if busy {
						for j := range 1 + i%(slots-1) {
							m.hold(ws[i], fmt.Sprintf("running-%d-%d", i, j))
						}
					}
				}
				b.ResetTimer()
				for b.Loop() {
					w := m.pick("job", nil, nil)
					if w == nil {
						b.Fatal("pick() = nil, want a worker")
					}
					m.release(w, "job")
				}
			})
		}
	}
}
