// Package python_test checks the Python worker (worker.py) against the real
// hub: Register, heartbeats, RunJob → JobAccepted → JobResult → ResultAck,
// with a JobRequest published to execute.queue and its JobResponse read
// from status.queue.
package python_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func amqpURL() string {
	if u := os.Getenv("BLACKTREE_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type proc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// start runs bin and stops it (SIGTERM, then SIGKILL) when the test ends.
func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, p.out.String())
		}
	})
	return p
}

func TestPythonWorkerRunsJobThroughRealHub(t *testing.T) {
	if out, err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		t.Fatalf("/usr/bin/python3 with python3-grpcio and python3-protobuf is needed: %v\n%s\ninstall them with: bash scripts/ensure-tools", err, out)
	}
	conn, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable: %v\nstart it with: bash ../shared/scripts/ensure-rabbitmq (from the repository root), then bash scripts/ensure-tools", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}

	execute, status := randomName("pyclient-test.execute"), randomName("pyclient-test.status")
	t.Cleanup(func() {
		for _, q := range []string{execute, status, execute + ".dead"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})

	// The real hub, with one worker token and an admin token.
	root := moduleRoot(t)
	binDir, err = os.MkdirTemp("", "python-test-bin-")
	if err != nil {
		t.Fatal(err)
	}
	hubBin := filepath.Join(binDir, "blacktree-hub")
	build := exec.Command("go", "build", "-o", hubBin, "./cmd/blacktree-hub")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/blacktree-hub: %v\n%s", err, out)
	}
	dir := t.TempDir()
	workerToken := randomName("wtok")
	tokens := filepath.Join(dir, "worker-tokens")
	admin := filepath.Join(dir, "admin-token")
	tokenFile := filepath.Join(dir, "worker-token")
	for f, body := range map[string]string{tokens: "pyworker:" + workerToken + "\n", admin: randomName("admin") + "\n", tokenFile: workerToken + "\n"} {
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	hub := start(t, "blacktree-hub", hubBin,
		"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--amqp-url", amqpURL(),
		"--execute-queue", execute, "--status-queue", status,
		"--worker-tokens", tokens, "--admin-token-file", admin)
	waitReady(t, hub, httpAddr)

	// The Python worker: exits 0 after one acknowledged result.
	worker := start(t, "python worker", "/usr/bin/python3", "-B", filepath.Join(root, "clients", "python", "worker.py"),
		"--hub", grpcAddr, "--token-file", tokenFile, "--insecure", "--jobs", "1")

	statuses, err := ch.Consume(status, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume %s: %v", status, err)
	}
	jobID := randomName("py-job")
	body, err := jobspec.EncodeRequest(&blacktreev1.JobRequest{JobId: jobID, RepoUrl: "acme/api", Branch: "main", ImageName: "acme/api:1.0", GithubToken: "secret-token"})
	if err != nil {
		t.Fatal(err)
	}
	err = ch.PublishWithContext(context.Background(), "", execute, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: jobID, Body: body,
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}

	var d amqp.Delivery
	select {
	case d = <-statuses:
	case <-worker.done:
		t.Fatalf("python worker exited before a status arrived:\n%s", worker.out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("no status on %s within 60s", status)
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
	case <-worker.done:
		if code := worker.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("python worker exit = %d, want 0:\n%s", code, worker.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("python worker did not exit after its result was acknowledged:\n%s", worker.out.String())
	}
	if out := worker.out.String(); !strings.Contains(out, "result acknowledged: job_id="+jobID) {
		t.Errorf("python worker output lacks the ResultAck:\n%s", out)
	}
}

func waitReady(t *testing.T, hub *proc, httpAddr string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-hub.done:
			t.Fatalf("blacktree-hub exited during start-up:\n%s", hub.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("blacktree-hub not ready on %s within 30s:\n%s", httpAddr, hub.out.String())
		}
	}
}
