package rabbit

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// gatedConn is the socket under a batchConn in these unit tests: each
// Write is recorded, and, while gated, announces itself on entered and
// waits for release (or Close). The batchConn's behaviour with a real
// broker is covered by every other test in this package.
type gatedConn struct {
	net.Conn // nil: only Write and Close are used

	gated   bool
	entered chan struct{} // receives once per gated Write
	release chan struct{} // one receive lets one gated Write return
	fail    error         // returned by every Write when set

	wrote chan struct{} // signalled (without blocking) after each recorded Write

	mu     sync.Mutex // guards the following
	writes [][]byte   // what each Write call was given
	closed chan struct{}
	once   sync.Once
}

func newGatedConn(gated bool) *gatedConn {
	return &gatedConn{
		gated:   gated,
		entered: make(chan struct{}, 16),
		release: make(chan struct{}, 16),
		closed:  make(chan struct{}),
		wrote:   make(chan struct{}, 1),
	}
}

func (g *gatedConn) Write(p []byte) (int, error) {
	if g.fail != nil {
		return 0, g.fail
	}
	if g.gated {
		g.entered <- struct{}{}
		select {
		case <-g.release:
		case <-g.closed:
			return 0, net.ErrClosed
		}
	}
	g.mu.Lock()
	g.writes = append(g.writes, append([]byte(nil), p...))
	g.mu.Unlock()
	select {
	case g.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (g *gatedConn) Close() error {
	g.once.Do(func() { close(g.closed) })
	return nil
}

func (g *gatedConn) written() (calls int, all []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, w := range g.writes {
		all = append(all, w...)
	}
	return len(g.writes), all
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// eventuallyWritten waits until the socket has received want bytes.
func eventuallyWritten(t *testing.T, g *gatedConn, want int) (int, []byte) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		calls, all := g.written()
		if len(all) >= want {
			return calls, all
		}
		select {
		case <-g.wrote:
		case <-deadline:
			return calls, all
		}
	}
}

func TestBatchConnBatchesWhileTheSocketIsBusy(t *testing.T) {
	g := newGatedConn(true)
	b := newBatchConn(g)
	defer b.Close()

	if _, err := b.Write([]byte("first;")); err != nil {
		t.Fatalf("Write() = %v, want nil", err)
	}
	waitSignal(t, g.entered, "the first socket write")
	// The writer is in the socket: these only queue, and none blocks.
	var want bytes.Buffer
	want.WriteString("first;")
	for i := range 10 {
		p := fmt.Sprintf("frame %d;", i)
		want.WriteString(p)
		if n, err := b.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v, want %d, nil", p, n, err, len(p))
		}
	}
	g.release <- struct{}{}
	waitSignal(t, g.entered, "the second socket write")
	g.release <- struct{}{}

	calls, all := eventuallyWritten(t, g, want.Len())
	if !bytes.Equal(all, want.Bytes()) {
		t.Fatalf("socket got %q, want %q", all, want.Bytes())
	}
	if calls != 2 {
		t.Fatalf("socket writes = %d, want 2 (the first frame, then the ten queued behind it in one)", calls)
	}
}

func TestBatchConnConcurrentWritersKeepTheirOrder(t *testing.T) {
	g := newGatedConn(false)
	b := newBatchConn(g)
	defer b.Close()

	const writers, frames = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range frames {
				if _, err := b.Write(fmt.Appendf(nil, "<%d:%03d>", w, i)); err != nil {
					t.Errorf("Write() = %v, want nil", err)
					return
				}
			}
		})
	}
	wg.Wait()
	_, all := eventuallyWritten(t, g, writers*frames*len("<0:000>"))
	next := make([]int, writers)
	for _, f := range bytes.SplitAfter(all, []byte(">")) {
		if len(f) == 0 {
			continue
		}
		var w, i int
		if _, err := fmt.Sscanf(string(f), "<%d:%d>", &w, &i); err != nil {
			t.Fatalf("socket got a torn frame %q: %v", f, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: frame %d arrived, want %d (out of order)", w, i, next[w])
		}
		next[w]++
	}
	for w, n := range next {
		if n != frames {
			t.Errorf("writer %d: %d frames arrived, want %d", w, n, frames)
		}
	}
}

func TestBatchConnBlocksPastTheBound(t *testing.T) {
	g := newGatedConn(true)
	b := newBatchConn(g)
	defer b.Close()

	if _, err := b.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, g.entered, "the first socket write")
	if _, err := b.Write(make([]byte, maxBatchPending)); err != nil { // fills the bound
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() {
		_, err := b.Write([]byte("over the bound"))
		returned <- err
	}()
	select {
	case err := <-returned:
		t.Fatalf("Write() past the bound returned %v while the socket was blocked, want it to block", err)
	case <-time.After(100 * time.Millisecond):
	}
	g.release <- struct{}{} // the writer takes the pending bytes: room again
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("Write() = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write() still blocked after the writer took the pending bytes")
	}
	// The writer is now in the socket with the pending bytes; the write
	// that waited for room follows in a third.
	waitSignal(t, g.entered, "the second socket write")
	g.release <- struct{}{}
	waitSignal(t, g.entered, "the third socket write")
	g.release <- struct{}{}
	if _, all := eventuallyWritten(t, g, 1+maxBatchPending+len("over the bound")); len(all) != 1+maxBatchPending+len("over the bound") {
		t.Fatalf("socket got %d bytes, want %d", len(all), 1+maxBatchPending+len("over the bound"))
	}
}

func TestBatchConnWriteErrorIsStickyAndClosesTheSocket(t *testing.T) {
	boom := errors.New("connection reset")
	g := newGatedConn(false)
	g.fail = boom
	b := newBatchConn(g)
	defer b.Close()

	if _, err := b.Write([]byte("lost")); err != nil {
		t.Fatalf("first Write() = %v, want nil (it is only queued)", err)
	}
	waitSignal(t, g.closed, "the socket to be closed after the failed write")
	if _, err := b.Write([]byte("later")); !errors.Is(err, boom) {
		t.Fatalf("Write() after a failed socket write = %v, want %v", err, boom)
	}
}

func TestBatchConnCloseEndsBlockedWrites(t *testing.T) {
	g := newGatedConn(true)
	b := newBatchConn(g)

	if _, err := b.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, g.entered, "the first socket write")
	if _, err := b.Write(make([]byte, maxBatchPending)); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := b.Write([]byte("y"))
		blocked <- err
	}()
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-blocked:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Write() = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close() left a Write blocked")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close() did not return while the writer was in the socket")
	}
	if _, err := b.Write([]byte("z")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write() after Close() = %v, want net.ErrClosed", err)
	}
}

// A read deadline set through the batchConn is re-armed by every read that
// returns bytes, so a peer that keeps sending (the broker's heartbeats)
// never trips it however long amqp091's heartbeater is kept from re-arming
// it; a silent peer still does. A real loopback socket: the deadline is
// the kernel's and the runtime's.
func TestBatchConnReadDeadlineFollowsArrivingBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := newBatchConn(raw)
	defer b.Close()
	peer := <-accepted
	if peer == nil {
		t.Fatal("Accept() failed")
	}
	defer peer.Close()

	const span, every, beats = 150 * time.Millisecond, 40 * time.Millisecond, 15 // 600 ms of beats, 4 spans
	if err := b.SetReadDeadline(time.Now().Add(span)); err != nil {
		t.Fatal(err)
	}
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range beats {
			<-tick.C
			if _, err := peer.Write([]byte{8}); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 1)
	for i := range beats {
		if _, err := b.Read(buf); err != nil {
			t.Fatalf("Read() of beat %d = %v, want each beat read (the deadline re-armed by the one before)", i, err)
		}
	}
	start := time.Now()
	_, err = b.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read() after the peer fell silent = %v, want a timeout", err)
	}
	if waited := time.Since(start); waited > 10*span {
		t.Errorf("Read() timed out after %v, want about %v", waited, span)
	}

	// The handshake's deadline (SetDeadline) bounds the whole exchange:
	// bytes arriving do not extend it.
	if err := b.SetDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := b.readSpan.Load(); got != 0 {
		t.Errorf("readSpan after SetDeadline = %d, want 0", got)
	}
}
