package main

// Helpers that run the real hub, the Go worker and the Python worker for
// the tests that need them, on the shared internal/cluster (build, start,
// readiness, stop) and internal/tlsutil/tlstest (certificates).

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/tlsutil/tlstest"
)

// moduleRoot is the repository root (two levels up from cmd/btctl).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := cluster.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// built are the binaries, built on first use into a directory TestMain
// removes.
var built struct {
	mu   sync.Mutex // guards the following
	dir  string
	bins *cluster.Binaries
}

// binaries builds the hub, the Go worker and btctl once per test run.
func binaries(t *testing.T) cluster.Binaries {
	t.Helper()
	built.mu.Lock()
	defer built.mu.Unlock()
	if built.bins != nil {
		return *built.bins
	}
	if built.dir == "" {
		d, err := os.MkdirTemp("", "btctl-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		built.dir = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bins, err := cluster.Build(ctx, moduleRoot(t), built.dir, false)
	if err != nil {
		t.Fatal(err)
	}
	built.bins = &bins
	return bins
}

// grpcurlBinary is the pinned grpcurl (a go.mod tool), built into the Go
// build cache.
func grpcurlBinary(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "tool", "-n", "grpcurl")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			t.Fatalf("go tool -n grpcurl: %v\n%s", err, exitErr.Stderr)
		}
		t.Fatalf("go tool -n grpcurl: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := cluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startProc runs bin for the rest of the test (cluster.StartForTest).
func startProc(t *testing.T, name, bin string, args ...string) *cluster.Process {
	t.Helper()
	return cluster.StartForTest(t, name, bin, nil, args...)
}

// testHub is a running blacktree-hub on random ports and random queues.
type testHub struct {
	grpcAddr, httpAddr     string
	execute, status        string
	adminToken             string
	workerName, workerTokn string
	tlsCA                  string // CA file when the hub serves TLS
	proc                   *cluster.Process
}

// startHub builds and starts the real hub with a worker token and an admin
// token, and waits until /readyz answers 200. With withTLS it serves TLS
// with a certificate for 127.0.0.1 signed by a test CA (h.tlsCA).
func startHub(t *testing.T, withTLS bool) *testHub {
	t.Helper()
	newRabbit(t) // fails loudly when RabbitMQ is down
	h := &testHub{
		grpcAddr:   freeAddr(t),
		httpAddr:   freeAddr(t),
		execute:    randomName("btctl-test.execute"),
		status:     randomName("btctl-test.status"),
		adminToken: randomName("admin"),
		workerName: "pyworker",
		workerTokn: randomName("wtok"),
	}
	deleteQueuesAtCleanup(t, h.execute, h.status, h.execute+".dead")
	dir := t.TempDir()
	tokens := filepath.Join(dir, "worker-tokens")
	admin := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokens, []byte(h.workerName+":"+h.workerTokn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(admin, []byte(h.adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--grpc-addr", h.grpcAddr, "--http-addr", h.httpAddr,
		"--amqp-url", cluster.SharedBrokerURL(), "--execute-queue", h.execute, "--status-queue", h.status,
		"--worker-tokens", tokens, "--admin-token-file", admin}
	if withTLS {
		certs := tlstest.Generate(t, dir)
		h.tlsCA = certs.CACert
		args = append(args, "--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey)
	}
	h.proc = startProc(t, "blacktree-hub", binaries(t).Hub, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cluster.WaitHTTP200(ctx, "http://"+h.httpAddr+"/readyz", h.proc); err != nil {
		t.Fatalf("blacktree-hub not ready: %v", err)
	}
	return h
}

func (h *testHub) vars() map[string]string {
	v := queueVars(h.execute, h.status)
	v["BLACKTREE_HUB"] = h.grpcAddr
	v["BLACKTREE_ADMIN_TOKEN"] = h.adminToken
	return v
}

// requirePythonGRPC fails the test when Debian's python3-grpcio is missing.
func requirePythonGRPC(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		t.Fatalf("/usr/bin/python3 with python3-grpcio and python3-protobuf is needed: %v\n%s\ninstall them with: bash scripts/ensure-tools", err, out)
	}
}

// startPythonWorker runs clients/python/worker.py against h and waits until
// it registered. It returns the worker's id.
func startPythonWorker(t *testing.T, h *testHub) (string, *cluster.Process) {
	t.Helper()
	requirePythonGRPC(t)
	id := randomName("py")
	tokenFile := filepath.Join(t.TempDir(), "worker-token")
	if err := os.WriteFile(tokenFile, []byte(h.workerTokn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(moduleRoot(t), "clients", "python", "worker.py")
	transport := []string{"--insecure"}
	if h.tlsCA != "" {
		transport = []string{"--tls-ca", h.tlsCA}
	}
	args := append([]string{"-B", script, "--hub", h.grpcAddr, "--token-file", tokenFile, "--worker-id", id}, transport...)
	p := startProc(t, "python worker", "/usr/bin/python3", args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitOutput(ctx, "registered:"); err != nil {
		t.Fatal(err)
	}
	return id, p
}

func deleteQueuesAtCleanup(t *testing.T, names ...string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(cluster.SharedBrokerURL())
		if err != nil {
			t.Errorf("delete test queues: %v", err)
			return
		}
		defer conn.Close()
		for _, q := range names {
			ch, err := conn.Channel()
			if err != nil {
				return
			}
			_, _ = ch.QueueDelete(q, false, false, false)
			_ = ch.Close()
		}
	})
}
