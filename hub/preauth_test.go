package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/auth"
)

const (
	preauthWorkerToken = "worker-token-0123456789abcdef"
	preauthAdminToken  = "admin-token-0123456789abcdef"
)

// startAuthHub starts a hub wired to a real auth.Authenticator the way
// blacktree-hub wires it (TapHandle, Authenticated, SessionKey), with
// short pre-authentication limits.
func startAuthHub(t *testing.T, mutate func(*Config)) *Hub {
	t.Helper()
	dir := t.TempDir()
	workers, admin := filepath.Join(dir, "workers"), filepath.Join(dir, "admin")
	if err := os.WriteFile(workers, []byte(preauthWorkerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(admin, []byte(preauthAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(auth.Config{WorkerTokensFile: workers, AdminTokenFile: admin, MaxFailuresPerMinute: 5},
		hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: testWriter{t}}))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := startFakeHub(t, func(c *Config) {
		c.TapHandle = authn.TapHandle
		c.Authenticated = func(ctx context.Context) bool { _, ok := auth.IdentityFromContext(ctx); return ok }
		c.SessionKey = func(ctx context.Context) string { id, _ := auth.IdentityFromContext(ctx); return id.Fingerprint }
		c.HandshakeTimeout = time.Second
		c.UnauthenticatedConnTimeout = time.Second
		if mutate != nil {
			mutate(c)
		}
	})
	return h
}

// h2Client speaks raw HTTP/2 to the hub, as an attacker's client would.
type h2Client struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	h := &h2Client{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	// Write errors are left to the reads: the hub may close a connection
	// over its limits at once.
	if _, err := io.WriteString(c, http2.ClientPreface); err == nil {
		_ = h.fr.WriteSettings()
	}
	return h
}

// headers opens stream id for method with the extra header fields (name,
// value pairs); a block over one frame goes out in CONTINUATION frames.
// Write errors are left to the reads (await).
func (h *h2Client) headers(id uint32, method string, endStream bool, extra ...string) {
	h.t.Helper()
	h.hbuf.Reset()
	fields := append([]string{":method", "POST", ":scheme", "http", ":path", method, ":authority", "hub",
		"content-type", "application/grpc", "te", "trailers"}, extra...)
	for i := 0; i < len(fields); i += 2 {
		// Never indexed: the hub advertises a header table of size 0.
		_ = h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: true})
	}
	block := h.hbuf.Bytes()
	const chunk = 16 << 10
	first := block[:min(len(block), chunk)]
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) <= chunk})
	for rest := block[len(first):]; err == nil && len(rest) > 0; {
		n := min(len(rest), chunk)
		err = h.fr.WriteContinuation(id, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	_ = err // a closed connection shows in the reads
}

// outcome is how the hub answered a stream.
type outcome struct {
	grpcStatus string // "" when no trailers arrived
	reset      bool   // RST_STREAM
	closed     error  // the connection ended (EOF, GOAWAY) before an answer, or the wait timed out
}

// await reads frames until stream id is answered (grpc-status, or reset)
// or the connection ends, for at most d.
func (h *h2Client) await(id uint32, d time.Duration) outcome {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(d))
	defer func() { _ = h.c.SetReadDeadline(time.Time{}) }()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return outcome{closed: err}
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			return outcome{closed: errors.New("GOAWAY " + f.ErrCode.String())}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return outcome{reset: true}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				if s := f.PseudoValue("status"); s != "" && s != "200" {
					return outcome{grpcStatus: "http " + s}
				}
				for _, hf := range f.Fields {
					if hf.Name == "grpc-status" {
						return outcome{grpcStatus: hf.Value}
					}
				}
			}
		}
	}
}

// waitClosed reports whether the hub closes the connection within d (the
// client sends nothing meanwhile but SETTINGS acks).
func (h *h2Client) waitClosed(d time.Duration) bool {
	o := h.await(0, d)
	var ne net.Error
	return o.closed != nil && !(errors.As(o.closed, &ne) && ne.Timeout())
}

// grpcFrame is a gRPC length-prefixed message header declaring n bytes.
func grpcFrame(n int) []byte {
	b := make([]byte, 5)
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	return b
}

// docs/SECURITY.md#limits: a call without valid credentials is refused
// from its headers alone, before the hub reads any of its body (so a
// large body costs nothing to decode), and failures past the rate limit
// are refused the same way with ResourceExhausted.
func TestUnauthenticatedRefusedBeforeBody(t *testing.T) {
	h := startAuthHub(t, nil)
	for _, method := range []string{
		blacktreev1.AdminService_ListWorkers_FullMethodName,
		blacktreev1.WorkerService_Connect_FullMethodName,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	} {
		c := dialH2(t, h.GRPCAddr().String())
		// Headers only, no END_STREAM: the answer must not wait for a body.
		c.headers(1, method, false, "authorization", "Bearer wrong-token-0123456789")
		if o := c.await(1, 10*time.Second); o.grpcStatus != "16" {
			t.Fatalf("%s with a wrong token, before any body: %+v (%v), want grpc-status 16 (Unauthenticated)", method, o, o.closed)
		}
		// The body that follows (a 4 MiB message announced, 256 KiB
		// sent) is for a stream that no longer exists: the hub drops it,
		// or the connection.
		for range 4 {
			_ = c.fr.WriteData(1, false, append(grpcFrame(4<<20), make([]byte, 64<<10)...))
		}
		_ = c.c.Close()
	}
	// The limit is 5 failures a minute: past it, calls from the address
	// are refused before any token is compared, the right one included,
	// still from the headers.
	c := dialH2(t, h.GRPCAddr().String())
	for id := uint32(1); id <= 5; id += 2 {
		c.headers(id, blacktreev1.AdminService_ListJobs_FullMethodName, false, "authorization", "Bearer wrong-token-0123456789")
		if o := c.await(id, 10*time.Second); o.grpcStatus != "16" && o.grpcStatus != "8" {
			t.Fatalf("wrong token %d: %+v, want grpc-status 16 or 8", id, o)
		}
	}
	c.headers(7, blacktreev1.AdminService_ListJobs_FullMethodName, false, "authorization", "Bearer "+preauthAdminToken)
	if o := c.await(7, 10*time.Second); o.grpcStatus != "8" {
		t.Errorf("the admin token past the failure limit: %+v, want grpc-status 8 (ResourceExhausted)", o)
	}
}

// Headers over MaxHeaderListSize are refused, even with a valid token.
func TestOversizedHeadersRefused(t *testing.T) {
	h := startAuthHub(t, func(c *Config) { c.UnauthenticatedConnTimeout = time.Minute })
	c := dialH2(t, h.GRPCAddr().String())
	c.headers(1, blacktreev1.AdminService_ListWorkers_FullMethodName, true,
		"authorization", "Bearer "+preauthAdminToken, "x-padding", strings.Repeat("p", 32<<10))
	o := c.await(1, 10*time.Second)
	if o.grpcStatus == "0" || isTimeout(o.closed) || o == (outcome{}) {
		t.Errorf("32 KiB of headers: %+v, want the call refused (a non-OK status, a reset or the connection closed)", o)
	}
	// The same call with normal headers is answered, on a new connection
	// when the hub closed this one.
	c = dialH2(t, h.GRPCAddr().String())
	c.headers(1, blacktreev1.AdminService_ListWorkers_FullMethodName, false, "authorization", "Bearer "+preauthAdminToken)
	_ = c.fr.WriteData(1, true, grpcFrame(0))
	if o := c.await(1, 10*time.Second); o.grpcStatus != "0" {
		t.Errorf("ListWorkers with normal headers: %+v, want grpc-status 0", o)
	}
}

// A connection that makes no authenticated call is closed after
// UnauthenticatedConnTimeout (whether it is silent, sent only the HTTP/2
// preface or only asked for health), and one that never finishes the
// preface after HandshakeTimeout; a worker's connection stays.
func TestIdleUnauthenticatedConnectionsClosed(t *testing.T) {
	h := startAuthHub(t, nil)
	addr := h.GRPCAddr().String()

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	prefaceOnly := dialH2(t, addr)
	healthOnly := dialH2(t, addr)
	healthOnly.headers(1, "/grpc.health.v1.Health/Check", false)
	_ = healthOnly.fr.WriteData(1, true, grpcFrame(0))
	if o := healthOnly.await(1, 10*time.Second); o.grpcStatus != "0" {
		t.Fatalf("health check without a token: %+v, want grpc-status 0 (health is open)", o)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	worker, err := tryRegister(t, conn, &blacktreev1.Register{WorkerId: "w1", Slots: 1}, "authorization", "Bearer "+preauthWorkerToken)
	if err != nil {
		t.Fatalf("worker Register = %v", err)
	}

	_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, silent); isTimeout(err) { // the hub's SETTINGS, then EOF
		t.Errorf("a connection that sends nothing: %v, want it closed by the hub", err)
	}
	if !prefaceOnly.waitClosed(10 * time.Second) {
		t.Error("a connection that only sent the HTTP/2 preface was not closed")
	}
	if !healthOnly.waitClosed(10 * time.Second) {
		t.Error("a connection that only checked health was not closed")
	}
	// Well past the timeout, the worker's session still answers.
	time.Sleep(1500 * time.Millisecond)
	if err := worker.Send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{}}}); err != nil {
		t.Errorf("worker heartbeat after the timeout: %v", err)
	}
	if s := stateOf(h, "w1"); s != stateFree {
		t.Errorf("worker state after the timeout = %v, want free", s)
	}
	if got := counterValue(h.metrics.connsIdleClosed); got < 2 {
		t.Errorf("connections_unauthenticated_closed_total = %v, want at least 2", got)
	}
}

// MaxConnsPerIP: connections over the limit are closed at accept; closing
// one frees its place.
func TestConnectionsPerIPCapped(t *testing.T) {
	h := startAuthHub(t, func(c *Config) {
		c.MaxConnsPerIP = 3
		c.UnauthenticatedConnTimeout = time.Minute
	})
	addr := h.GRPCAddr().String()
	var open []*h2Client
	for range 3 {
		c := dialH2(t, addr)
		c.headers(1, "/grpc.health.v1.Health/Check", false)
		_ = c.fr.WriteData(1, true, grpcFrame(0))
		if o := c.await(1, 10*time.Second); o.grpcStatus != "0" {
			t.Fatalf("connection within the limit: %+v, want served", o)
		}
		open = append(open, c)
	}
	over := dialH2(t, addr)
	if !over.waitClosed(10 * time.Second) {
		t.Fatal("the connection over --max-conns-per-ip was not closed")
	}
	if got := counterValue(h.metrics.connsRefused.WithLabelValues("per_ip")); got < 1 {
		t.Errorf("connections_refused_total{limit=per_ip} = %v, want at least 1", got)
	}
	_ = open[0].c.Close()
	eventually(t, 10*time.Second, "a freed place taken", func() bool {
		c := dialH2(t, addr)
		c.headers(1, "/grpc.health.v1.Health/Check", false)
		_ = c.fr.WriteData(1, true, grpcFrame(0))
		ok := c.await(1, 3*time.Second).grpcStatus == "0"
		_ = c.c.Close()
		return ok
	})
}

// Requests other than worker frames are bounded (MaxRequestMsgSize), for
// authenticated admins too; reflection needs the admin token.
func TestAdminRequestsBounded(t *testing.T) {
	h := startAuthHub(t, nil)
	conn, err := grpc.NewClient(h.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+preauthAdminToken), 10*time.Second)
	defer cancel()
	admin := blacktreev1.NewAdminServiceClient(conn)
	_, err = admin.DrainWorker(ctx, &blacktreev1.DrainWorkerRequest{WorkerId: strings.Repeat("x", 100<<10)})
	if err == nil || !strings.Contains(err.Error(), "size limit") {
		t.Errorf("a 100 KiB DrainWorker = %v, want refused for its size", err)
	}
	if _, err := admin.DrainWorker(ctx, &blacktreev1.DrainWorkerRequest{WorkerId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("a small DrainWorker = %v, want NotFound (served)", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without a token = %v, want served", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stateOf is the state ListWorkers shows for worker id.
func stateOf(h *Hub, id string) blacktreev1.WorkerState {
	for _, w := range h.manager.list() {
		if w.GetWorkerId() == id {
			return w.GetState()
		}
	}
	return blacktreev1.WorkerState_WORKER_STATE_UNSPECIFIED
}
