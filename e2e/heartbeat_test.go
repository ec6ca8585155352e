package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// A fleet past the hub's heartbeat budget is told a longer interval; the
// real worker agents follow it, and the hub judges them by it: nobody is
// dropped for beating less often than the interval it registered with.
// On a grid of the whole interval (--heartbeat-grid 1s) every worker beats
// at the same phase of the wall clock, so the hub receives the fleet's
// heartbeats together.
func TestFleetHeartbeatInterval(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	// At most 4 heartbeats a second: one worker beats every 250ms, two
	// every 500ms, three every second. Missing 3 of the first worker's
	// 250ms beats would end its session after 750ms.
	h := e.startHub("--heartbeat-interval", "250ms", "--max-heartbeat-rate", "4", "--max-heartbeat-interval", "2s",
		"--heartbeat-grid", "1s")
	const n = 3
	for i := range n {
		e.startWorker(fmt.Sprintf("hb-%d", i), []string{h.GRPCAddr}, "--executor", "noop")
	}
	e.waitWorkers(h, n, 30*time.Second)
	client, ctx := e.admin(h)
	list := func() []*blacktreev1.WorkerInfo {
		t.Helper()
		resp, err := client.ListWorkers(ctx, &blacktreev1.ListWorkersRequest{})
		if err != nil {
			t.Fatalf("ListWorkers() = %v", err)
		}
		return resp.GetWorkers()
	}
	sessions := map[string]string{}
	for _, w := range list() {
		sessions[w.GetWorkerId()] = w.GetSessionId()
	}

	// The workers registered first learn the 1s interval with their next
	// heartbeat; count each worker's heartbeats (the hub's last-heard
	// time, polled) over 5s once that has happened.
	const settle, window = time.Second, 5 * time.Second
	beats := map[string]map[time.Time]bool{}
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < settle+window {
		<-tick.C // polling an external process: there is no event to wait on
		if time.Since(start) < settle {
			continue
		}
		for _, w := range list() {
			if beats[w.GetWorkerId()] == nil {
				beats[w.GetWorkerId()] = map[time.Time]bool{}
			}
			beats[w.GetWorkerId()][w.GetLastHeartbeat().AsTime()] = true
		}
	}

	var counts []string
	var phase0 time.Duration = -1
	var spread time.Duration // the largest distance of a heartbeat's phase from the first one's
	for _, w := range list() {
		id := w.GetWorkerId()
		if got, want := w.GetSessionId(), sessions[id]; got != want || w.GetState() != blacktreev1.WorkerState_WORKER_STATE_FREE {
			t.Errorf("worker %s: session %s, state %v; want the session it started with (%s), FREE", w.GetName(), got, w.GetState(), want)
		}
		// About 6 at the 1s interval, 10 at 500ms, 20 at 250ms.
		if c := len(beats[id]); c < 2 || c > 8 {
			t.Errorf("worker %s: %d heartbeats in %s, want about 5 (every second)", w.GetName(), c, window)
		}
		counts = append(counts, fmt.Sprint(len(beats[id])))
		for at := range beats[id] {
			phase := time.Duration(at.UnixNano()) % time.Second
			if phase0 < 0 {
				phase0 = phase
			}
			d := (phase - phase0 + time.Second) % time.Second
			spread = max(spread, min(d, time.Second-d))
		}
	}
	// Random phases would spread the three workers' heartbeats over the
	// second; a timer on a loaded machine may fire late by some tens of ms.
	if spread > 150*time.Millisecond {
		t.Errorf("heartbeats' phases within the second differ by up to %v, want at most 150ms (one phase: --heartbeat-grid 1s)", spread)
	}
	if !strings.Contains(metricsText(t, h), "blacktree_heartbeat_interval_seconds 1\n") {
		t.Errorf("/metrics lacks blacktree_heartbeat_interval_seconds 1")
	}
	record(t, "3 workers past a budget of 4 heartbeats/s (base 250ms): told 1s, heartbeats in %s: %s; no session dropped; on a 1s grid their phases differ by at most %v",
		window, strings.Join(counts, ", "), spread.Round(time.Millisecond))
}
