package main

// Helpers that run the real hub and the Python worker for the tests that
// need them. clients/python/python_test.go has the same few helpers; a
// shared test-support package would remove the copy.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
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
)

// moduleRoot is the repository root (two levels up from cmd/btctl).
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

var (
	buildMu  sync.Mutex // guards built
	built    = map[string]string{}
	buildDir string
)

// goBinary builds pkg (a module path or ./cmd/...) once per test run and
// returns the binary's path.
func goBinary(t *testing.T, pkg, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "btctl-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	p := filepath.Join(buildDir, name)
	cmd := exec.Command("go", "build", "-o", p, pkg)
	cmd.Dir = moduleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = p
	return p
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

// proc is a child process whose output is kept for failure messages.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startProc starts bin and stops it (SIGTERM, then SIGKILL) when the test
// ends, printing its output if the test failed.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitOutput waits until the process printed substr.
func (p *proc) waitOutput(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.out.String(), substr) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before printing %q:\n%s", p.name, substr, p.out.String())
		case <-deadline:
			t.Fatalf("%s did not print %q within %s:\n%s", p.name, substr, timeout, p.out.String())
		case <-tick.C:
		}
	}
}

// testHub is a running blacktree-hub on random ports and random queues.
type testHub struct {
	grpcAddr, httpAddr     string
	execute, status        string
	adminToken             string
	workerName, workerTokn string
	tlsCA                  string // CA file when the hub serves TLS
	proc                   *proc
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
		"--amqp-url", testAMQPURL(), "--execute-queue", h.execute, "--status-queue", h.status,
		"--worker-tokens", tokens, "--admin-token-file", admin}
	if withTLS {
		var cert, key string
		h.tlsCA, cert, key = writeTestCerts(t, dir)
		args = append(args, "--tls-cert", cert, "--tls-key", key)
	}
	bin := goBinary(t, "./cmd/blacktree-hub", "blacktree-hub")
	h.proc = startProc(t, "blacktree-hub", bin, args...)
	h.waitReady(t)
	return h
}

func (h *testHub) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + h.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-h.proc.done:
			t.Fatalf("blacktree-hub exited during start-up:\n%s", h.proc.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("blacktree-hub not ready on %s within 30s:\n%s", h.httpAddr, h.proc.out.String())
		}
	}
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
func startPythonWorker(t *testing.T, h *testHub) (string, *proc) {
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
	p.waitOutput(t, "registered:", 30*time.Second)
	return id, p
}

func deleteQueuesAtCleanup(t *testing.T, names ...string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(testAMQPURL())
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

// writeTestCerts writes a test CA and a server certificate for 127.0.0.1
// signed by it; it returns the CA, certificate and key file names.
func writeTestCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "btctl test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "hub.pem"), filepath.Join(dir, "hub.key")
	for f, b := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}
