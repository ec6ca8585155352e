package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// TestClusterControlPlaneMovesToTheNextNode: a control plane given two
// brokers (a private node, then the shared broker, standing for two nodes)
// publishes through the first; when it is killed, the control plane moves
// to the second, publishes there and reads statuses from it.
func TestClusterControlPlaneMovesToTheNextNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	first, err := StartPrivateBroker(ctx, "btcpfailover", t.TempDir(), 5698)
	if err != nil {
		t.Fatalf("StartPrivateBroker() = %v", err)
	}
	t.Cleanup(first.Kill)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	execQ, statusQ := "bt-test-cp-exec-"+hex.EncodeToString(b), "bt-test-cp-status-"+hex.EncodeToString(b)
	for _, u := range []string{first.URL, SharedBrokerURL()} {
		declareQueues(t, u, execQ, statusQ)
	}
	t.Cleanup(func() { deleteQueues(t, SharedBrokerURL(), execQ, statusQ) })

	cp, err := NewClusterControlPlane([]string{first.URL, SharedBrokerURL()}, execQ, statusQ)
	if err != nil {
		t.Fatalf("NewClusterControlPlane() = %v", err)
	}
	defer cp.Close()
	jobs := func(prefix string) []*blacktreev1.JobRequest {
		var out []*blacktreev1.JobRequest
		for i := range 10 {
			out = append(out, &blacktreev1.JobRequest{JobId: fmt.Sprintf("%s-%d", prefix, i), RepoUrl: "o/r", ImageName: "i:1"})
		}
		return out
	}
	if n, err := cp.PublishAll(ctx, jobs("before"), 4); err != nil || n != 0 {
		t.Fatalf("PublishAll(before) = %d, %v; want 0, nil", n, err)
	}
	if n := depth(t, first.URL, execQ); n != 10 {
		t.Fatalf("first node's execute queue holds %d, want 10", n)
	}

	first.Kill()
	if _, err := cp.PublishAll(ctx, jobs("after"), 4); err != nil {
		t.Fatalf("PublishAll(after the first node's loss) = %v", err)
	}
	if n := depth(t, SharedBrokerURL(), execQ); n != 10 {
		t.Errorf("second node's execute queue holds %d, want 10", n)
	}
	moves := cp.Failovers()
	if len(moves) != 1 || moves[0].Node != SharedBrokerURL() || moves[0].Back.Before(moves[0].Lost) {
		t.Fatalf("Failovers() = %+v, want one move to %s", moves, SharedBrokerURL())
	}
	body, err := jobspec.EncodeResponse(&blacktreev1.JobResponse{JobId: "after-0", Success: true})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, SharedBrokerURL(), statusQ, body)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if _, err := cp.WaitFor(wctx, "after-0"); err != nil {
		t.Fatalf("WaitFor(a status on the second node) = %v", err)
	}
}
