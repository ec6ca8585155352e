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
// It also enforces the connection limits (docs/SECURITY.md#limits): at
// most connLimits.total connections, and perIP from one address, are
// accepted at once (one over is closed as soon as it is accepted); and,
// when connLimits.unauthenticated is set, a connection that has carried
// no authenticated call (markAuthenticated) that long after its accept is
// closed.
//
// The listener hands grpc-go the accepted *net.TCPConn itself, not a
// wrapper: grpc-go sets TCP_USER_TIMEOUT and reads without a pinned buffer
// only on the concrete type. So the registry does not see closes:
// closeIfSole drops the entry it closes and sweep drops the ones grpc-go
// closed (also at once, at most once per sweepMinGap, when a limit is
// reached). Why the hub closes connections at all:
// docs/design/ending-sessions.md.
type connRegistry struct {
	limits connLimits

	mu        sync.Mutex // guards the following
	conns     map[string]*connEntry
	perIP     map[string]int // entries per remote IP
	lastSweep time.Time      // of a sweep a limit asked for
	stopped   bool           // stop was called: arm no more timers
}

// connLimits are the registry's limits; zero values mean no limit.
type connLimits struct {
	total           int
	perIP           int
	unauthenticated time.Duration
	// refused is told of each connection closed at accept ("total" or
	// "per_ip"), idleClosed of each closed for carrying no authenticated
	// call in time. Either may be nil.
	refused    func(reason string)
	idleClosed func()
}

// sweepMinGap bounds how often a connection over a limit makes the
// registry sweep (a sweep looks at every connection).
const sweepMinGap = time.Second

type connEntry struct {
	c             net.Conn
	ip            string
	sessions      int         // worker sessions on this connection
	authenticated bool        // it carried an authenticated call
	idle          *time.Timer // closes it unless authenticated in time; nil when not armed
}

func newConnRegistry(limits connLimits) *connRegistry {
	return &connRegistry{limits: limits, conns: map[string]*connEntry{}, perIP: map[string]int{}}
}

// listener returns l with every accepted connection registered.
func (r *connRegistry) listener(l net.Listener) net.Listener {
	return &registeringListener{Listener: l, r: r}
}

type registeringListener struct {
	net.Listener
	r *connRegistry
}

// Accept returns the next connection within the limits; connections over
// a limit are closed here and never reach grpc-go.
func (l *registeringListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return c, err
		}
		if reason := l.r.add(c); reason != "" {
			if l.r.limits.refused != nil {
				l.r.limits.refused(reason) // first: the peer sees the close after the count
			}
			_ = c.Close()
			continue
		}
		return c, nil
	}
}

// add registers c, or returns which limit refuses it.
func (r *connRegistry) add(c net.Conn) (refused string) {
	addr := c.RemoteAddr().String()
	ip := addr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		ip = host
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.conns[addr]; old != nil { // the address of a connection closed unseen
		r.removeLocked(addr, old)
	}
	over := func() string {
		switch {
		case r.limits.total > 0 && len(r.conns) >= r.limits.total:
			return "total"
		case r.limits.perIP > 0 && r.perIP[ip] >= r.limits.perIP:
			return "per_ip"
		}
		return ""
	}
	if over() != "" && time.Since(r.lastSweep) >= sweepMinGap {
		r.lastSweep = time.Now()
		r.sweepLocked()
	}
	if reason := over(); reason != "" {
		return reason
	}
	e := &connEntry{c: c, ip: ip}
	r.conns[addr] = e
	r.perIP[ip]++
	if d := r.limits.unauthenticated; d > 0 && !r.stopped {
		e.idle = time.AfterFunc(d, func() { r.closeUnauthenticated(addr, e) })
	}
	return ""
}

// removeLocked drops e, registered under addr.
func (r *connRegistry) removeLocked(addr string, e *connEntry) {
	delete(r.conns, addr)
	if r.perIP[e.ip]--; r.perIP[e.ip] <= 0 {
		delete(r.perIP, e.ip)
	}
	if e.idle != nil {
		e.idle.Stop()
	}
}

// markAuthenticated records that addr's connection carried an
// authenticated call: it is no longer closed for being idle.
func (r *connRegistry) markAuthenticated(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.conns[addr]; e != nil && !e.authenticated {
		e.authenticated = true
		if e.idle != nil {
			e.idle.Stop()
			e.idle = nil // a worker's connection lives for days: keep no timer
		}
	}
}

// closeUnauthenticated closes e (addr's connection) unless it carried an
// authenticated call meanwhile.
func (r *connRegistry) closeUnauthenticated(addr string, e *connEntry) {
	r.mu.Lock()
	if r.conns[addr] != e || e.authenticated {
		r.mu.Unlock()
		return
	}
	r.removeLocked(addr, e)
	r.mu.Unlock()
	if !connClosed(e.c) {
		if r.limits.idleClosed != nil {
			r.limits.idleClosed() // first: the peer sees the close after the count
		}
		_ = e.c.Close()
	}
}

// stop disarms the idle timers (the hub is stopping).
func (r *connRegistry) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	for _, e := range r.conns {
		if e.idle != nil {
			e.idle.Stop()
		}
	}
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
	r.removeLocked(addr, e)
	r.mu.Unlock()
	_ = e.c.Close()
	return true
}

// sweep drops entries whose connection grpc-go has closed (connections
// that never carried a worker session: admin calls, health probes).
func (r *connRegistry) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweepLocked()
}

func (r *connRegistry) sweepLocked() {
	for addr, e := range r.conns {
		if connClosed(e.c) {
			r.removeLocked(addr, e)
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
