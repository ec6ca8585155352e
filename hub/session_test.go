package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func (h *testHub) liveWorker(t *testing.T, id string) *Worker {
	t.Helper()
	for _, w := range h.manager.live() {
		if w.id == id {
			return w
		}
	}
	t.Fatalf("worker %s not live", id)
	return nil
}

func senderIdle(w *Worker) bool {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	return !w.sending && w.queue == nil
}

// An idle worker has no sender goroutine and no queue; one starts for a
// frame and exits once it is written.
func TestSenderOnlyWhileQueued(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	f := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "idle"}, false)
	w := h.liveWorker(t, "idle")
	eventually(t, 5*time.Second, "sender idle after Registered", func() bool { return senderIdle(w) })
	for i := range 3 {
		if !w.send(drainMsg("test")) {
			t.Fatalf("send() #%d = false, want true", i)
		}
	}
	for range 3 {
		f.next("Drain", func(m *blacktreev1.HubMessage) bool { return m.GetDrain() != nil })
	}
	eventually(t, 5*time.Second, "sender idle after the frames", func() bool { return senderIdle(w) })
}

// A session the hub ends while the worker is silent (its handler blocked
// in Recv) is closed at once: the worker's stream ends, the hub lists the
// worker dead, and no frame is queued after the end.
func TestHubEndedSilentSession(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) {
		c.HeartbeatInterval = 200 * time.Millisecond
		c.MissedHeartbeats = 2
	})
	f := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "silent"}, false)
	w := h.liveWorker(t, "silent")
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("silent worker's stream still open 5s after its heartbeats stopped")
	}
	if got := h.workerState("silent"); got != stateDead {
		t.Errorf("workerState() = %v, want DEAD", got)
	}
	if cause := w.endCause(); !errors.Is(cause, ErrMissedHeartbeats) {
		t.Errorf("endCause() = %v, want %v", cause, ErrMissedHeartbeats)
	}
	if w.send(drainMsg("late")) {
		t.Error("send() after the session ended = true, want false")
	}
}

// The registry closes a connection only when one session uses it, and
// sweeps closed ones.
func TestConnRegistry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := newConnRegistry(connLimits{})
	rl := r.listener(ln)
	defer rl.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := rl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := server.(*net.TCPConn); !ok {
		t.Fatalf("Accept() = %T, want *net.TCPConn (grpc-go needs the concrete type)", server)
	}
	addr := client.LocalAddr().String()
	r.attach(addr)
	r.attach(addr)
	if r.closeIfSole(addr) {
		t.Fatal("closeIfSole() with two sessions = true, want false")
	}
	r.detach(addr)
	if !r.closeIfSole(addr) {
		t.Fatal("closeIfSole() with one session = false, want true")
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("client Read() after close = %v, want EOF", err)
	}
	if got := r.len(); got != 0 {
		t.Errorf("len() after closeIfSole = %d, want 0", got)
	}

	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s2, err := rl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	r.sweep()
	if got := r.len(); got != 1 {
		t.Fatalf("len() after sweep of an open connection = %d, want 1", got)
	}
	_ = s2.Close()
	r.sweep()
	if got := r.len(); got != 0 {
		t.Errorf("len() after sweep of a closed connection = %d, want 0", got)
	}
}

// A healthy worker whose every slot turns over at once (a RunJob and a
// ResultAck per slot queued before the sender runs) is not taken for a
// slow reader; past the bound only a stuck sender or the hard cap ends the
// session.
func TestSendQueueBound(t *testing.T) {
	for _, tc := range []struct {
		name  string
		slots int
	}{
		{name: "one slot", slots: 1},
		{name: "many slots", slots: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := testWorker("w", tc.slots, nil)
			w.maxQueue = sendQueueBound(DefaultSendQueue, tc.slots)
			for i := range tc.slots {
				id := fmt.Sprintf("j%d", i)
				if !w.send(runJobMsg(validJob(id), "")) || !w.send(resultAckMsg(id)) || !w.send(cancelJobMsg(id, "x")) {
					t.Fatalf("send() of slot %d's frames = false, want true (bound %d)", i, w.maxQueue)
				}
			}
			if w.ended() {
				t.Fatalf("session ended with %d frames queued: %v", len(w.queued()), w.endCause())
			}
		})
	}
	t.Run("past the bound, sender progressing", func(t *testing.T) {
		w := testWorker("w", 1, nil)
		w.maxQueue = 4
		w.sending, w.progress = true, time.Now() // a sender that just took a frame
		for i := range 4 * 10 {
			if !w.send(resultAckMsg(fmt.Sprintf("a%d", i))) {
				t.Fatalf("send() #%d = false, want true (sender not stuck, under the hard cap)", i)
			}
		}
	})
	t.Run("past the bound, sender stuck", func(t *testing.T) {
		w := testWorker("w", 1, nil)
		w.maxQueue = 4
		w.sending, w.progress = true, time.Now().Add(-2*slowReaderAfter)
		for i := range 4 {
			w.send(resultAckMsg(fmt.Sprintf("a%d", i)))
		}
		if w.send(resultAckMsg("one more")) || !errors.Is(w.endCause(), ErrSlowWorker) {
			t.Errorf("send() past the bound with a stuck sender: endCause() = %v, want %v", w.endCause(), ErrSlowWorker)
		}
	})
	t.Run("hard cap", func(t *testing.T) {
		w := testWorker("w", 1, nil)
		w.maxQueue = 4
		w.sending, w.progress = true, time.Now().Add(time.Hour) // never stuck
		for i := range hardQueueFactor * 4 {
			w.send(resultAckMsg(fmt.Sprintf("a%d", i)))
		}
		if w.send(resultAckMsg("one more")) || !errors.Is(w.endCause(), ErrSlowWorker) {
			t.Errorf("send() at the hard cap: endCause() = %v, want %v", w.endCause(), ErrSlowWorker)
		}
	})
}

// Under a burst, a worker with many slots keeps its session: every job
// completes on it, none is orphaned.
func TestManySlotsBurst(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.SendQueue = 4 })
	const n = 48
	dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "wide", Slots: n}, true)
	var ids []string
	for i := range n {
		req := validJob(fmt.Sprintf("burst-%02d", i))
		ids = append(ids, req.GetJobId())
		e.publish(req)
	}
	for id, s := range e.waitStatus(ids...) {
		if !s.GetSuccess() || s.GetWorkerId() != "wide" {
			t.Errorf("status of %s = %v, want success on worker wide", id, s)
		}
	}
	if got := h.workerState("wide"); got == stateDead {
		t.Errorf("workerState() after the burst = %v, want live", got)
	}
}

// After a credentials change, CloseUnauthorized ends the sessions whose
// credentials no longer pass Config.Authorized: the worker's stream ends
// at once and it is listed dead with the revocation as the cause.
func TestCloseUnauthorized(t *testing.T) {
	e := newEnv(t)
	var revoked atomic.Bool
	h := e.startHub(func(c *Config) {
		c.Authorized = func(context.Context) bool { return !revoked.Load() }
	})
	f := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "soon-revoked"}, false)
	w := h.liveWorker(t, "soon-revoked")
	if n := h.CloseUnauthorized(); n != 0 {
		t.Fatalf("CloseUnauthorized() while authorized = %d, want 0", n)
	}
	revoked.Store(true)
	if n := h.CloseUnauthorized(); n != 1 {
		t.Fatalf("CloseUnauthorized() after revocation = %d, want 1", n)
	}
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked worker's stream still open 5s after CloseUnauthorized")
	}
	if cause := w.endCause(); !errors.Is(cause, ErrRevoked) {
		t.Errorf("endCause() = %v, want %v", cause, ErrRevoked)
	}
	eventually(t, 5*time.Second, "revoked worker dead", func() bool { return h.workerState("soon-revoked") == stateDead })
}

// queued returns the frames waiting to be sent (for tests).
func (w *Worker) queued() []*blacktreev1.HubMessage {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	return append([]*blacktreev1.HubMessage(nil), w.queue...)
}

// len returns the number of registered connections (for tests).
func (r *connRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}
