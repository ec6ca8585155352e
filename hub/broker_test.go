package hub

import (
	"fmt"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
)

// killConnection closes, server-side, the connections named name.
func killConnection(t *testing.T, name string) {
	t.Helper()
	if err := cluster.CloseConnections(name); err != nil {
		t.Fatalf("killConnection(%q): %v", name, err)
	}
}

// docs/protocol.md#broker-restarts: the broker drops both of the hub's connections while
// jobs are offered, running and finishing; every job is accounted for
// (at least one status each), nothing is lost.
func TestBrokerConnectionsDropped(t *testing.T) {
	e := newEnv(t)
	// rabbitmqctl can take seconds: keep the offered job offered meanwhile.
	h := e.startHub(func(c *Config) { c.AcceptTimeout = time.Minute })
	slow := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "slow", Slots: 2}, false)
	var ids []string
	for i := range 2 {
		ids = append(ids, fmt.Sprintf("bk-slow-%d", i))
	}
	e.publish(validJob(ids[0]), validJob(ids[1]))
	first := slow.expectRunJob().GetJobId()
	slow.accept(first) // one accepted (acked), one left offered (unacked)
	second := slow.expectRunJob().GetJobId()
	eventually(t, 5*time.Second, "first job running", func() bool { return h.jobState(first) == jobRunning })

	killConnection(t, "bt-hubtest-"+e.id+"-consume")
	killConnection(t, "bt-hubtest-"+e.id+"-publish")

	// The offered job's delivery went stale: the broker redelivers it and
	// the hub drops it as a duplicate of the in-flight job, or it is
	// accepted and its (stale) ack fails harmlessly.
	slow.accept(second)
	slow.result(first, true)
	slow.result(second, false)
	slow.expectResultAcks(first, second)
	eventually(t, 20*time.Second, "hub ready again", h.Ready)

	// More jobs after the reconnect run on a fresh worker.
	dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "fresh", Slots: 4}, true)
	for i := range 5 {
		id := fmt.Sprintf("bk-after-%d", i)
		ids = append(ids, id)
		e.publish(validJob(id))
	}
	e.waitStatus(ids...)
	if got := e.cp.Statuses(second); len(got) == 0 || got[0].GetSuccess() {
		t.Errorf("status of %s = %v, want the worker's failure", second, got)
	}
	eventually(t, 10*time.Second, "execute queue empty", func() bool { return e.depth(e.execQ) == 0 })
	eventually(t, 10*time.Second, "no job in flight", func() bool { return len(h.dispatcher.list()) == 0 })
}
