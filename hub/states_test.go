package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

const (
	stateDead     = blacktreev1.WorkerState_WORKER_STATE_DEAD
	stateFree     = blacktreev1.WorkerState_WORKER_STATE_FREE
	stateBusy     = blacktreev1.WorkerState_WORKER_STATE_BUSY
	stateDraining = blacktreev1.WorkerState_WORKER_STATE_DRAINING
)

// A killed connection or a clean close makes the worker dead within 1s;
// it stays visible (DeadRetention).
func TestWorkerDeadOnStreamEnd(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	for _, tc := range []struct {
		name string
		end  func(*fakeWorker)
	}{
		{name: "killed connection", end: func(f *fakeWorker) { f.kill() }},
		{name: "clean close", end: func(f *fakeWorker) { _ = f.stream.CloseSend() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "w-" + nonName.ReplaceAllString(tc.name, "-")
			f := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: id}, false)
			if got := h.workerState(id); got != stateFree {
				t.Fatalf("workerState() = %v, want FREE", got)
			}
			tc.end(f)
			eventually(t, time.Second, "worker dead", func() bool { return h.workerState(id) == stateDead })
		})
	}
}

// proxy forwards TCP to target until paused; paused, it swallows bytes in
// both directions without closing anything (a silent network).
type proxy struct {
	ln     net.Listener
	target string
	paused atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex // guards conns
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(u, c) })
		p.wg.Go(func() { p.pipe(c, u) })
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.paused.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) || !p.paused.Load() {
				_ = dst.Close()
			}
			return
		}
	}
}

// A silent network (no FIN, no RST) is detected: by gRPC keepalive, and by
// missed application heartbeats, each within a configured bound.
func TestSilentNetworkDetected(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   func(*Config)
		bound time.Duration
	}{
		{name: "keepalive", bound: 6 * time.Second, cfg: func(c *Config) {
			c.KeepaliveTime, c.KeepaliveTimeout, c.HeartbeatInterval = time.Second, time.Second, time.Hour
		}},
		{name: "heartbeats", bound: 3 * time.Second, cfg: func(c *Config) {
			c.HeartbeatInterval, c.MissedHeartbeats = 300*time.Millisecond, 3
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			h := e.startHub(tc.cfg)
			p := newProxy(t, h.GRPCAddr().String())
			dialWorker(t, p.ln.Addr().String(), &blacktreev1.Register{WorkerId: "silent"}, false)
			if got := h.workerState("silent"); got != stateFree {
				t.Fatalf("workerState() = %v, want FREE", got)
			}
			p.paused.Store(true)
			eventually(t, tc.bound, "silent worker dead", func() bool { return h.workerState("silent") == stateDead })
		})
	}
}

// The first frame must be a valid Register, in time.
func TestRegisterValidation(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.RegisterTimeout = 300 * time.Millisecond })
	conn, err := grpc.NewClient(h.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := blacktreev1.NewWorkerServiceClient(conn)
	for _, tc := range []struct {
		name  string
		first *blacktreev1.WorkerMessage
		want  codes.Code
	}{
		{
			name: "no frame",
			want: codes.DeadlineExceeded,
		},
		{
			name:  "heartbeat first",
			first: &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{}}},
			want:  codes.InvalidArgument,
		},
		{
			name:  "no worker id",
			first: &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: &blacktreev1.Register{Slots: 1}}},
			want:  codes.InvalidArgument,
		},
		{
			name:  "zero slots",
			first: &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: &blacktreev1.Register{WorkerId: "x"}}},
			want:  codes.InvalidArgument,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := client.Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.first != nil {
				_ = s.Send(tc.first)
			}
			_, err = s.Recv()
			if got := status.Code(err); got != tc.want {
				t.Errorf("Recv() code = %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

// The same worker_id reconnecting replaces the old session. A worker that
// has read Registered is its worker's session already, so the later of two
// registrations wins however close together they come (the hub once sent
// Registered before it recorded the session, and a quick reconnect could be
// replaced by the stream it replaced).
func TestReconnectReplacesSession(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	for i := range 20 {
		id := fmt.Sprintf("twin-%d", i)
		old := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: id}, false)
		if got, want := h.sessionOf(id), old.reg.GetSessionId(); got != want {
			t.Fatalf("round %d: session after Registered = %q, want %q (the first stream)", i, got, want)
		}
		cur := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: id}, true)
		if got, want := h.sessionOf(id), cur.reg.GetSessionId(); got != want {
			t.Fatalf("round %d: session after the reconnect's Registered = %q, want %q (the new stream)", i, got, want)
		}
		select {
		case <-old.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: old session still open after the same worker_id registered again", i)
		}
		if got := h.workerState(id); got != stateFree {
			t.Errorf("round %d: workerState() = %v, want FREE (new session)", i, got)
		}
		if i == 0 {
			e.publish(validJob("twin-job"))
			if s := e.waitStatus("twin-job")["twin-job"]; !s.GetSuccess() {
				t.Errorf("status = %v, want success via the new session", s)
			}
		}
		cur.kill()
	}
}

// Registered goes out only once the hub has recorded the session: while the
// manager is busy (its lock held here), the worker reads nothing.
func TestRegisteredAfterTheSessionIsRecorded(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	conn, err := grpc.NewClient(h.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := blacktreev1.NewWorkerServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	first := make(chan *blacktreev1.HubMessage, 1)
	h.manager.mu.Lock()
	locked := true
	defer func() {
		if locked {
			h.manager.mu.Unlock()
		}
	}()
	if err := s.Send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: &blacktreev1.Register{
		WorkerId: "w",
		Slots:    1,
	}}}); err != nil {
		t.Fatalf("Send(Register) = %v", err)
	}
	go func() {
		m, _ := s.Recv()
		first <- m
	}()
	select {
	case m := <-first:
		t.Fatalf("Recv() = %v before the manager recorded the session, want nothing yet", m)
	case <-time.After(300 * time.Millisecond):
	}
	h.manager.mu.Unlock()
	locked = false
	select {
	case m := <-first:
		if m.GetRegistered() == nil {
			t.Fatalf("Recv() = %v, want Registered", m)
		}
		if got, want := h.sessionOf("w"), m.GetRegistered().GetSessionId(); got != want {
			t.Errorf("sessionOf() = %q, want %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("no Registered within 10s of the manager's lock being released")
	}
	cancel()
}
