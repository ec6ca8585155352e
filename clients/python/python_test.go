// Package python_test checks the Python worker (worker.py) against the real
// hub: Register, heartbeats, RunJob → JobAccepted → JobResult → ResultAck,
// with a JobRequest published to execute.queue and its JobResponse read
// from status.queue.
package python_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/jobspec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// repoRoot is the module root, where the hub is built from and worker.py
// lives.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := cluster.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// start runs bin for the rest of the test (cluster.StartForTest).
func start(t *testing.T, name, bin string, args ...string) *cluster.Process {
	t.Helper()
	return cluster.StartForTest(t, name, bin, []string{"PYTHONDONTWRITEBYTECODE=1"}, args...)
}

// realHub is a blacktree-hub built from this tree, on the shared RabbitMQ,
// with one worker token, on queues of its own.
type realHub struct {
	bins      cluster.Binaries
	grpcAddr  string
	tokenFile string // the worker token
	execute   string
	status    string
	ch        *amqp.Channel // on the shared broker, for the test's own use
}

// startRealHub builds the binaries and starts a hub with extra flags; the
// hub, its queues and the channel go at the end of the test.
func startRealHub(t *testing.T, extra ...string) *realHub {
	t.Helper()
	conn, err := amqp.DialConfig(cluster.SharedBrokerURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable: %v\nstart it with: bash ../shared/scripts/ensure-rabbitmq (from the repository root), then bash scripts/ensure-tools", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	h := &realHub{
		ch:      ch,
		execute: randomName("pyclient-test.execute"),
		status:  randomName("pyclient-test.status"),
	}
	t.Cleanup(func() {
		for _, q := range []string{h.execute, h.status, h.execute + ".dead", h.execute + ".ledger"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})

	root := repoRoot(t)
	buildCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h.bins, err = cluster.Build(buildCtx, root, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	workerToken := randomName("wtok")
	tokens := filepath.Join(dir, "worker-tokens")
	admin := filepath.Join(dir, "admin-token")
	h.tokenFile = filepath.Join(dir, "worker-token")
	for f, body := range map[string]string{
		tokens:      "pyworker:" + workerToken + "\n",
		admin:       randomName("admin") + "\n",
		h.tokenFile: workerToken + "\n",
	} {
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	grpcAddr, errGRPC := cluster.FreeAddr()
	httpAddr, errHTTP := cluster.FreeAddr()
	if err := errors.Join(errGRPC, errHTTP); err != nil {
		t.Fatal(err)
	}
	h.grpcAddr = grpcAddr
	args := append([]string{
		"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--amqp-url", cluster.SharedBrokerURL(),
		"--execute-queue", h.execute, "--status-queue", h.status,
		"--worker-tokens", tokens, "--admin-token-file", admin,
	}, extra...)
	hub := start(t, "blacktree-hub", h.bins.Hub, args...)
	readyCtx, cancelReady := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelReady()
	if err := cluster.WaitHTTP200(readyCtx, "http://"+httpAddr+"/readyz", hub); err != nil {
		t.Fatalf("blacktree-hub not ready: %v", err)
	}
	return h
}

// publish puts a JobRequest for jobID on the hub's execute queue.
func (h *realHub) publish(t *testing.T, jobID string) {
	t.Helper()
	body, err := jobspec.EncodeRequest(&blacktreev1.JobRequest{
		JobId:       jobID,
		RepoUrl:     "acme/api",
		Branch:      "main",
		ImageName:   "acme/api:1.0",
		GithubToken: "secret-token",
	})
	if err != nil {
		t.Fatal(err)
	}
	err = h.ch.PublishWithContext(context.Background(), "", h.execute, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: jobID, Body: body,
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func TestPythonWorkerRunsJobThroughRealHub(t *testing.T) {
	requirePython(t)
	h := startRealHub(t)
	root := repoRoot(t)

	// The Python worker: exits 0 after one acknowledged result.
	worker := start(t, "python worker", "/usr/bin/python3", "-B", filepath.Join(root, "clients", "python", "worker.py"),
		"--hub", h.grpcAddr, "--token-file", h.tokenFile, "--insecure", "--jobs", "1")

	statuses, err := h.ch.Consume(h.status, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume %s: %v", h.status, err)
	}
	jobID := randomName("py-job")
	h.publish(t, jobID)

	var d amqp.Delivery
	select {
	case d = <-statuses:
	case <-worker.Done():
		t.Fatalf("python worker exited before a status arrived:\n%s", worker.Output())
	case <-time.After(60 * time.Second):
		t.Fatalf("no status on %s within 60s", h.status)
	}
	resp, err := jobspec.DecodeResponse(d.Body)
	if err != nil {
		t.Fatalf("status body %q: %v", d.Body, err)
	}
	if resp.GetJobId() != jobID || !resp.GetSuccess() || resp.GetImageUrl() != "acme/api:1.0" || resp.GetLogs() != "python worker" || resp.GetError() != "" {
		t.Errorf("status = %v, want job %s success, imageUrl acme/api:1.0, logs \"python worker\"", resp, jobID)
	}
	if d.MessageId != jobID || d.ContentType != "application/json" {
		t.Errorf("status properties message_id %q content_type %q, want %s, application/json", d.MessageId, d.ContentType, jobID)
	}
	if strings.Contains(string(d.Body), "secret-token") {
		t.Errorf("status carries the git token: %s", d.Body)
	}

	// --jobs 1: the worker exits 0 once the hub acknowledged the result.
	select {
	case <-worker.Done():
		if code := worker.ExitCode(); code != 0 {
			t.Errorf("python worker exit = %d, want 0:\n%s", code, worker.Output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("python worker did not exit after its result was acknowledged:\n%s", worker.Output())
	}
	if out := worker.Output(); !strings.Contains(out, "result acknowledged: job_id="+jobID) {
		t.Errorf("python worker output lacks the ResultAck:\n%s", out)
	}
}
