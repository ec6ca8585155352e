package hub

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/rabbit"
)

// /metrics reports the execute queue's ready messages as the broker counts
// them and the deliveries this hub holds unacked, and the slots by label
// set, on a real broker.
func TestAutoscaleMetrics(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.HoldTimeout = time.Minute }, func(c *rabbit.Config) { c.Paced = true })
	e.publish(validJob("as-1"), validJob("as-2"), validJob("as-3"))
	ready := fmt.Sprintf("blacktree_queue_messages_ready{queue=%q} ", e.execQ)
	unacked := fmt.Sprintf("blacktree_queue_messages_unacked{queue=%q} ", e.execQ)
	waitMetrics := func(what string, want ...string) {
		t.Helper()
		var body string
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			body = getMetrics(t, h)
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(body, w+"\n")
			}
			if ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: /metrics lacks %q:\n%s", what, want, grepMetrics(body, "blacktree_queue_", "blacktree_slots"))
	}
	// No worker: no slot, so the hub takes nothing and all three wait.
	waitMetrics("no worker", ready+"3", unacked+"0")

	// A 1-slot worker that never answers: the hub takes its window (one
	// free slot plus the lookahead of 2), offers one and holds two.
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "as-w", Labels: map[string]string{"arch": "amd64"}}, false)
	w.expectRunJob()
	waitMetrics("one worker", ready+"0", unacked+"3",
		`blacktree_slots{kind="total",labels="arch=amd64"} 1`, `blacktree_slots{kind="free",labels="arch=amd64"} 0`)
}

// grepMetrics keeps the lines of body that start with one of prefixes.
func grepMetrics(body string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// blacktree_slots sums the slots of the workers that take jobs by label
// set, and keeps at most maxSlotLabelSets sets.
func TestSlotsByLabelSet(t *testing.T) {
	m := newWorkerManager(Config{}, hclog.NewNullLogger())
	add := func(id string, labels map[string]string, slots, jobs int, draining bool) {
		e := &workerEntry{w: &Worker{id: id, labels: labels, slots: slots}, jobs: map[string]struct{}{}, current: true, draining: draining}
		for i := range jobs {
			e.jobs[fmt.Sprint(id, i)] = struct{}{}
		}
		m.workers[id] = e
	}
	add("a", map[string]string{"os": "linux", "arch": "amd64"}, 4, 1, false)
	add("b", map[string]string{"arch": "amd64", "os": "linux"}, 2, 2, false)
	add("c", nil, 1, 0, false)
	add("d", map[string]string{"arch": "arm64"}, 8, 0, true) // draining: not counted
	got := m.slotsByLabelSet()
	want := map[string]slotCount{"arch=amd64,os=linux": {total: 6, free: 3}, "": {total: 1, free: 1}}
	if len(got) != len(want) {
		t.Fatalf("slotsByLabelSet() = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("slotsByLabelSet()[%q] = %+v, want %+v", k, got[k], v)
		}
	}

	for i := range maxSlotLabelSets + 10 {
		add(fmt.Sprint("many", i), map[string]string{"n": fmt.Sprint(i)}, 1, 0, false)
	}
	got = m.slotsByLabelSet()
	if len(got) != maxSlotLabelSets+1 {
		t.Fatalf("slotsByLabelSet() has %d sets, want %d (the bound plus %q)", len(got), maxSlotLabelSets+1, otherLabelSet)
	}
	total := 0
	for _, c := range got {
		total += c.total
	}
	if want := 6 + 1 + maxSlotLabelSets + 10; total != want {
		t.Errorf("total slots over the sets = %d, want %d: the bounded sets lose none", total, want)
	}
	if got["arch=amd64,os=linux"].total != 6 {
		t.Errorf("largest set = %+v, want it kept whole", got["arch=amd64,os=linux"])
	}
}
