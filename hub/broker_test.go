package hub

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// killConnection closes, server-side, every connection whose
// connection_name is name, as a broker failure would (same technique as
// internal/rabbit's tests: match by peer port across two listings).
func killConnection(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "peer_port", "client_properties", "--formatter", "json").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v (needs rabbitmqctl on PATH with access to the local node)", err)
	}
	var conns []struct {
		PeerPort int                 `json:"peer_port"`
		Props    [][]json.RawMessage `json:"client_properties"`
	}
	if err := json.Unmarshal(out, &conns); err != nil {
		t.Fatalf("parse rabbitmqctl output: %v\n%s", err, out)
	}
	ports := map[string]bool{}
	for _, c := range conns {
		for _, p := range c.Props {
			var key, val string
			if len(p) == 3 && json.Unmarshal(p[0], &key) == nil && key == "connection_name" &&
				json.Unmarshal(p[2], &val) == nil && val == name {
				ports[strconv.Itoa(c.PeerPort)] = true
			}
		}
	}
	if len(ports) == 0 {
		t.Fatalf("killConnection(%q): no such connection", name)
	}
	out, err = exec.Command("rabbitmqctl", "-s", "list_connections", "peer_port", "pid").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		port, pid, ok := strings.Cut(line, "\t")
		if !ok || !ports[port] {
			continue
		}
		if out, err := exec.Command("rabbitmqctl", "-q", "close_connection", pid, "test: simulated broker failure").CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl close_connection %s: %v\n%s", pid, err, out)
		}
	}
}

// DESIGN §5.6/§5.7: the broker drops both of the hub's connections while
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
