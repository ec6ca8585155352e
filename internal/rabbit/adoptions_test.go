package rabbit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/blacktree/blacktree/internal/broker"
)

// startAnother runs a second Client on e's queues (another replica).
func startAnother(t *testing.T, e *testEnv, name string, logger hclog.Logger) *Client {
	t.Helper()
	other := &testEnv{cfg: e.cfg, admin: e.admin, logger: logger}
	other.cfg.ConnectionName += "-" + name
	return other.start(t)
}

// receiveAdoption returns the next announcement or fails after timeout.
func receiveAdoption(t *testing.T, c *Client, timeout time.Duration) broker.Adoption {
	t.Helper()
	select {
	case a := <-c.Adoptions():
		return a
	case <-time.After(timeout):
		t.Fatalf("no adoption announcement within %v", timeout)
	}
	panic("unreachable")
}

// TestAdoptionsReachEveryReplica: an announcement from one Client reaches
// every Client on the same execute queue (itself included), also after the
// receiver's consume connection was rebuilt.
func TestAdoptionsReachEveryReplica(t *testing.T) {
	e := newEnv(t, nil)
	a := e.start(t)
	logger, logs := capturingLogger(t)
	b := startAnother(t, e, "b", logger)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	want := broker.Adoption{HubID: "hub-a", JobID: "job-1", WorkerID: "w-1"}
	if err := a.AnnounceAdoption(ctx, want); err != nil {
		t.Fatalf("AnnounceAdoption() = %v", err)
	}
	if got := receiveAdoption(t, b, 5*time.Second); got != want {
		t.Errorf("replica b got %+v, want %+v", got, want)
	}
	if got := receiveAdoption(t, a, 5*time.Second); got != want {
		t.Errorf("the announcing client got %+v, want its own %+v", got, want)
	}

	// b's consume connection dies; its next session binds a new queue.
	killConnection(t, e.cfg.ConnectionName+"-b-consume")
	waitFor(t, "b's consumer reconnected", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "consumer: reconnected")
	})
	want = broker.Adoption{HubID: "hub-a", JobID: "job-2", WorkerID: "w-1"}
	if err := a.AnnounceAdoption(ctx, want); err != nil {
		t.Fatalf("AnnounceAdoption() = %v", err)
	}
	if got := receiveAdoption(t, b, 5*time.Second); got != want {
		t.Errorf("replica b after a reconnect got %+v, want %+v", got, want)
	}
	if err := a.AnnounceAdoption(ctx, broker.Adoption{JobID: "no-hub"}); err == nil {
		t.Errorf("AnnounceAdoption() without a hub id = nil, want an error")
	}
}
