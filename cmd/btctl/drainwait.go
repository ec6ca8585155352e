package main

import (
	"context"
	"fmt"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// drainPoll is how often `drain --wait` asks the hub about the worker.
const drainPoll = 500 * time.Millisecond

// waitDrained polls ListWorkers until the worker id is fenced and idle
// (WorkerInfo.fenced, no running or offered job) and returns it then; a
// timeout is an infrastructure error (exit 3), like submit --wait's.
func waitDrained(ctx context.Context, hub *adminClient, id string, timeout time.Duration) (*blacktreev1.WorkerInfo, error) {
	deadline := time.Now().Add(timeout)
	var last *blacktreev1.WorkerInfo
	for {
		cctx, cancel := hub.ctx(ctx)
		resp, err := hub.api.ListWorkers(cctx, &blacktreev1.ListWorkersRequest{})
		cancel()
		if err != nil {
			return nil, hub.rpcErr("drain --wait: list workers", err)
		}
		last = nil
		for _, w := range resp.GetWorkers() {
			if w.GetWorkerId() == id {
				last = w
			}
		}
		if drainedIdle(last) {
			return last, nil
		}
		if time.Now().After(deadline) {
			return nil, infraErr("drain --wait: worker %s not fenced and idle within --timeout %s (%s)", id, timeout, drainProgress(last))
		}
		t := time.NewTimer(drainPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, infraErr("drain --wait: interrupted (%s)", drainProgress(last))
		case <-t.C:
		}
	}
}

// drainedIdle reports whether w takes no new job and runs none.
func drainedIdle(w *blacktreev1.WorkerInfo) bool {
	return w != nil && w.GetFenced() && len(w.GetRunningJobIds()) == 0 &&
		w.GetState() != blacktreev1.WorkerState_WORKER_STATE_DEAD
}

// drainProgress says what a drain still waits for.
func drainProgress(w *blacktreev1.WorkerInfo) string {
	switch {
	case w == nil:
		return "the hub no longer lists it"
	case w.GetState() == blacktreev1.WorkerState_WORKER_STATE_DEAD:
		return "it is disconnected"
	case !w.GetFenced():
		return "it has not confirmed draining yet"
	}
	return fmt.Sprintf("%s, running %d job(s)", stateName(w.GetState()), len(w.GetRunningJobIds()))
}
