package hub

import (
	"fmt"
	"sync"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/rabbit"
)

// TestConsumptionFollowsCapacity (docs/design/consumption.md): with no
// worker the hub takes no delivery; a worker with 2 slots lets it take 2
// plus the lookahead of 1; with every slot taken it takes no more, and a
// freed slot gets the job held here before the broker is asked again.
func TestConsumptionFollowsCapacity(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) {
		c.Lookahead = 1
		c.HoldTimeout = time.Minute // the held job stays here for the test
	}, func(c *rabbit.Config) { c.Paced = true })
	var jobs []*blacktreev1.JobRequest
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("cap-%d", i)
		jobs, ids = append(jobs, validJob(id)), append(ids, id)
	}
	e.publish(jobs...)
	stays := func(what string, cond func() bool) {
		t.Helper()
		for range 10 {
			if !cond() {
				t.Fatalf("%s: no longer true", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stays("no worker: every job ready, none on the hub", func() bool {
		return e.depth(e.execQ) == 6 && len(h.dispatcher.list()) == 0
	})

	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1", Slots: 2}, false)
	first := []string{w.expectRunJob().GetJobId(), w.expectRunJob().GetJobId()}
	eventually(t, 5*time.Second, "2 offered and 1 held", func() bool { return len(h.dispatcher.list()) == 3 })
	stays("slots full: the hub holds 3 (2 slots + lookahead 1)", func() bool {
		return e.depth(e.execQ) == 3 && len(h.dispatcher.list()) == 3 && h.dispatcher.heldCount() == 1
	})

	for _, id := range first {
		w.accept(id)
		w.result(id, true)
	}
	for range len(ids) - len(first) { // the held job first, then what the broker sends
		id := w.expectRunJob().GetJobId()
		w.accept(id)
		w.result(id, true)
	}
	e.waitStatus(ids...)
	if n := e.depth(e.execQ); n != 0 {
		t.Errorf("ready after all ran = %d, want 0", n)
	}
}

// pacedBroker is a fakeBroker that records the windows the hub sets.
type pacedBroker struct {
	*fakeBroker
	mu     sync.Mutex // guards window
	window int
}

func (b *pacedBroker) SetWindow(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.window = n
}

func (b *pacedBroker) lastWindow() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.window
}

// TestWindowFollowsFreeSlots: the window is the free slots of the workers
// that take jobs plus the lookahead, and 0 with none: before any worker,
// with every slot offered, while the only worker drains and after it left.
func TestWindowFollowsFreeSlots(t *testing.T) {
	pb := &pacedBroker{fakeBroker: &fakeBroker{ch: make(chan broker.Delivery)}, window: -1}
	h := startHubOn(t, pb, func(c *Config) { c.Lookahead = 2 })
	window := func(what string, want int) {
		t.Helper()
		eventually(t, 5*time.Second, fmt.Sprintf("%s: window %d", what, want), func() bool { return pb.lastWindow() == want })
	}
	window("no worker", 0)
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1", Slots: 3}, false)
	window("3 free slots", 5)
	deliver(t, pb.fakeBroker, validJob("win-1"))
	w.expectRunJob()
	window("2 free slots", 4)
	deliver(t, pb.fakeBroker, validJob("win-2"))
	deliver(t, pb.fakeBroker, validJob("win-3"))
	window("every slot offered", 0)
	for _, id := range []string{"win-1", "win-2", "win-3"} {
		w.accept(id)
		w.result(id, true)
	}
	window("slots free again", 5)
	w.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{Draining: true}}})
	window("worker draining", 0)
	w.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{}}})
	window("worker back", 5)
	w.kill()
	window("worker gone", 0)
}
