package hub

import (
	"context"
	"errors"
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
		{name: "no frame", want: codes.DeadlineExceeded},
		{name: "heartbeat first", first: &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{}}}, want: codes.InvalidArgument},
		{name: "no worker id", first: &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: &blacktreev1.Register{Slots: 1}}}, want: codes.InvalidArgument},
		{name: "zero slots", first: &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: &blacktreev1.Register{WorkerId: "x"}}}, want: codes.InvalidArgument},
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

// The same worker_id reconnecting replaces the old session.
func TestReconnectReplacesSession(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	old := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "twin"}, false)
	dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "twin"}, true)
	select {
	case <-old.done:
	case <-time.After(5 * time.Second):
		t.Fatal("old session still open after the same worker_id registered again")
	}
	if got := h.workerState("twin"); got != stateFree {
		t.Errorf("workerState() = %v, want FREE (new session)", got)
	}
	e.publish(validJob("twin-job"))
	if s := e.waitStatus("twin-job")["twin-job"]; !s.GetSuccess() {
		t.Errorf("status = %v, want success via the new session", s)
	}
}
