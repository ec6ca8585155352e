package hub

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// connRegistry remembers the hub's accepted gRPC connections by remote
// address, so the hub can close a worker's connection when it must end a
// session whose handler is blocked in Recv: grpc-go has no way to end one
// server stream from outside its handler, and the handler is the session's
// receive loop (one goroutine per idle worker, docs/design/idle-worker-memory.md).
//
// The listener hands grpc-go the accepted *net.TCPConn itself, not a
// wrapper: grpc-go sets TCP_USER_TIMEOUT and reads without a pinned buffer
// only on the concrete type. So the registry does not see closes:
// closeIfSole drops the entry it closes and sweep drops the ones grpc-go
// closed. Why the hub closes connections at all: docs/design/ending-sessions.md.
type connRegistry struct {
	mu    sync.Mutex // guards the following
	conns map[string]*connEntry
}

type connEntry struct {
	c        net.Conn
	sessions int // worker sessions on this connection
}

func newConnRegistry() *connRegistry {
	return &connRegistry{conns: map[string]*connEntry{}}
}

// listener returns l with every accepted connection registered.
func (r *connRegistry) listener(l net.Listener) net.Listener {
	return &registeringListener{Listener: l, r: r}
}

type registeringListener struct {
	net.Listener
	r *connRegistry
}

func (l *registeringListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.r.mu.Lock()
		l.r.conns[c.RemoteAddr().String()] = &connEntry{c: c}
		l.r.mu.Unlock()
	}
	return c, err
}

// attach counts a worker session on addr's connection.
func (r *connRegistry) attach(addr string) {
	r.mu.Lock()
	if e := r.conns[addr]; e != nil {
		e.sessions++
	}
	r.mu.Unlock()
}

// detach uncounts a session attached to addr.
func (r *connRegistry) detach(addr string) {
	r.mu.Lock()
	if e := r.conns[addr]; e != nil && e.sessions > 0 {
		e.sessions--
	}
	r.mu.Unlock()
}

// closeIfSole closes addr's connection when the calling session is the only
// one on it (a client may multiplex a newer session on the same
// connection; closing would end that one too). It reports whether it
// closed.
func (r *connRegistry) closeIfSole(addr string) bool {
	r.mu.Lock()
	e := r.conns[addr]
	if e == nil || e.sessions > 1 {
		r.mu.Unlock()
		return false
	}
	delete(r.conns, addr)
	r.mu.Unlock()
	_ = e.c.Close()
	return true
}

// sweep drops entries whose connection grpc-go has closed (connections
// that never carried a worker session: admin calls, health probes).
func (r *connRegistry) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for addr, e := range r.conns {
		if connClosed(e.c) {
			delete(r.conns, addr)
		}
	}
}

// connClosed reports whether c has been closed. Control on a closed
// descriptor fails without a system call.
func connClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	return raw.Control(func(uintptr) {}) != nil
}

// sweepEvery runs sweep every d until stop is closed.
func (r *connRegistry) sweepEvery(d time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.sweep()
		}
	}
}
