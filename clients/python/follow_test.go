package python_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// TestPythonFollowsJobEvents: follow.py, subscribed to a real hub's job
// events, prints a running job's output before the job's status exists
// and exits 0 at its successful finished event.
func TestPythonFollowsJobEvents(t *testing.T) {
	requirePython(t)
	if out, err := exec.Command("/usr/bin/python3", "-c", "import pika").CombinedOutput(); err != nil {
		t.Fatalf("/usr/bin/python3 with python3-pika is needed: %v\n%s\ninstall it with: bash scripts/ensure-tools", err, out)
	}
	exchange := randomName("pyclient-test.events")
	h := startRealHub(t, "--events-exchange", exchange)
	t.Cleanup(func() { _ = h.ch.ExchangeDelete(exchange, false, false) })
	start(t, "blacktree-worker", h.bins.Worker, "--hub", h.grpcAddr, "--token-file", h.tokenFile, "--insecure",
		"--name", "go-worker", "--state-dir", t.TempDir(), "--executor", "noop", "--noop-delay", "3s", "--noop-log-lines", "3")

	jobID := randomName("py-follow")
	follower := start(t, "follow.py", "/usr/bin/python3", "-B", filepath.Join(repoRoot(t), "clients", "python", "follow.py"),
		"--amqp-url", cluster.SharedBrokerURL(), "--events-exchange", exchange, "--timeout", "120", jobID)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := follower.WaitOutput(ctx, "following job "+jobID); err != nil {
		t.Fatalf("follow.py did not subscribe: %v\n%s", err, follower.Output())
	}
	statuses, err := h.ch.Consume(h.status, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume %s: %v", h.status, err)
	}
	h.publish(t, jobID)

	if err := follower.WaitOutput(ctx, "line 1 of 3"); err != nil {
		t.Fatalf("follow.py never printed the job's first line: %v\n%s", err, follower.Output())
	}
	select {
	case d := <-statuses:
		t.Errorf("status %s published before follow.py printed the job's first line; want the line live", d.Body)
	default:
	}
	select {
	case <-follower.Done():
	case <-ctx.Done():
		t.Fatalf("follow.py did not exit at the job's end:\n%s", follower.Output())
	}
	out := follower.Output()
	if code := follower.ExitCode(); code != 0 || !strings.Contains(out, "line 3 of 3") || !strings.Contains(out, "job "+jobID+" succeeded") {
		t.Errorf("follow.py exit %d, output:\n%s\nwant exit 0, lines 1-3 and the job's success", code, out)
	}
	if strings.Contains(out, "missed") {
		t.Errorf("follow.py saw a gap in a single hub's events:\n%s", out)
	}
}
