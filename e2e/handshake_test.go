package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// TestRollingUpgradeWorkers (docs/protocol.md#versions): during a rolling
// upgrade a worker from before the version handshake (it sends no
// version) and a current one share a hub and both run jobs; a worker
// claiming a version the hub does not speak is refused with both versions
// named, and, never registered, gives up after --connect-timeout.
func TestRollingUpgradeWorkers(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	e.startWorker("old", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "100ms", "--protocol-version", "0")
	e.startWorker("new", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "100ms")
	future := e.startWorker("future", []string{h.GRPCAddr}, "--executor", "noop", "--protocol-version", "99", "--connect-timeout", "5s")
	e.waitWorkers(h, 2, 30*time.Second)

	client, actx := e.admin(h)
	resp, err := client.ListWorkers(actx, &blacktreev1.ListWorkersRequest{})
	if err != nil {
		t.Fatalf("ListWorkers() = %v", err)
	}
	idOf := map[string]string{"old": e.workerID("old"), "new": e.workerID("new")}
	listed := map[string]bool{}
	for _, w := range resp.GetWorkers() {
		listed[w.GetWorkerId()] = true
		if w.GetProtocolVersion() != 1 {
			t.Errorf("worker %s protocol_version = %d, want 1 (0 taken as 1)", w.GetWorkerId(), w.GetProtocolVersion())
		}
	}
	if len(listed) != 2 || !listed[idOf["old"]] || !listed[idOf["new"]] {
		t.Fatalf("ListWorkers ids = %v, want old and new (%v) only", listed, idOf)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jobs := ids("upgrade", 40)
	e.publish(ctx, jobs...)
	got, err := e.cp.WaitFor(ctx, jobs...)
	if err != nil {
		t.Fatalf("WaitFor() = %v%s", err, e.diagnose(h))
	}
	ran := map[string]int{}
	for id, r := range got {
		if !r.GetSuccess() {
			t.Errorf("status %s = %v, want success", id, r)
		}
		ran[r.GetWorkerId()]++
	}
	if ran[idOf["old"]] == 0 || ran[idOf["new"]] == 0 {
		t.Errorf("jobs by worker id = %v, want some on old (%s) and some on new (%s)", ran, idOf["old"], idOf["new"])
	}
	if l := e.cp.Ledger(jobs); l.Lost != 0 || l.Duplicates != 0 {
		t.Errorf("Ledger() = %s, want every job answered once", l)
	}

	select {
	case <-future.Done():
		if code := future.ExitCode(); code == 0 {
			t.Errorf("refused worker exit = 0, want non-zero")
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("refused worker still running 60s after --connect-timeout 5s:\n%s", tail(future.Output(), 3000))
	}
	out := future.Output()
	for _, want := range []string{"worker protocol version 99 is too new", "this hub speaks versions 1 to 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("refused worker output lacks %q:\n%s", want, tail(out, 3000))
		}
	}
	if m := metricsText(t, h); !strings.Contains(m, `blacktree_register_refused_total{reason="protocol"} 1`) {
		t.Errorf("/metrics lacks blacktree_register_refused_total{reason=\"protocol\"} 1")
	}
	record(t, "unnumbered worker ran %d, current ran %d of %d jobs; version 99 refused", ran[idOf["old"]], ran[idOf["new"]], len(jobs))
}

// workerID is the id a worker started by startWorker keeps in its state
// directory (the hub may know it by its token's name instead of --name).
func (e *env) workerID(name string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "state-"+name, "worker-id"))
	if err != nil {
		e.t.Fatalf("worker %s: read its id: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}
