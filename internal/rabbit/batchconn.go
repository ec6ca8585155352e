package rabbit

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// batchConn is the socket under an AMQP connection, with writes batched.
//
// amqp091 flushes its frame buffer after every publish, ack and heartbeat:
// one write system call each, made while the library's send lock is held,
// so concurrent publishers (and acks) queue on that lock and then pay a
// system call apiece. Here Write only appends to a buffer; one writer
// goroutine per connection writes whatever has accumulated in a single
// system call. Under load many frames share a call and the broker reads
// them in one go; when idle a write costs a goroutine wake-up instead of
// blocking the caller on the socket (docs/design/dispatch-throughput.md).
//
// Write never reports the bytes written that a kernel socket buffer would
// not either: a successful Write means buffered, not delivered. The first
// failed write is sticky (every later Write returns it) and closes the
// socket, so amqp091's reader fails and shuts the connection down; the
// client then treats it as any lost connection: unconfirmed publishes are
// published again, unsettled deliveries are redelivered by the broker.
//
// Backpressure: Write blocks while maxBatchPending bytes wait, so RabbitMQ's
// TCP flow control still reaches the publishers.
//
// Read deadlines: see Read. One mutex, mu, owns the buffer; the writer
// goroutine is waited for by Close.
type batchConn struct {
	net.Conn // the socket: reads, write deadlines and addresses pass through

	// readSpan is how far ahead amqp091 last set the read deadline
	// (nanoseconds; 0: no deadline to keep re-arming). Set by the library's
	// heartbeater goroutine, read by its reader goroutine.
	readSpan atomic.Int64

	mu      sync.Mutex // guards the following
	pending []byte     // bytes accepted by Write, not yet handed to the socket
	blocked int        // Writes waiting for room (tests read it through state)
	err     error      // sticky: the first write error, or net.ErrClosed after Close
	more    sync.Cond  // signalled when pending gains bytes or err is set (the writer waits)
	room    sync.Cond  // broadcast when pending is taken or err is set (blocked Writes wait)

	done chan struct{} // closed when the writer goroutine returns
}

// maxBatchPending bounds the bytes waiting for the socket before Write
// blocks. A few frames' worth (amqp091's frame max is 128 KiB): enough to
// batch a burst, small enough that flow control is felt at once.
const maxBatchPending = 256 << 10

// maxBatchKeep is the largest buffer the writer keeps between batches; a
// larger one (a big body) is dropped so that an idle connection stays small.
const maxBatchKeep = 64 << 10

// newBatchConn wraps c and starts its writer goroutine.
func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c, done: make(chan struct{})}
	b.more.L = &b.mu
	b.room.L = &b.mu
	go b.writeLoop()
	return b
}

// SetReadDeadline records how far ahead t is, for Read to re-arm, and sets
// it. amqp091's heartbeater calls it after every frame the reader takes,
// with three heartbeat intervals.
func (b *batchConn) SetReadDeadline(t time.Time) error {
	span := int64(0)
	if !t.IsZero() {
		span = max(int64(time.Until(t)), 1)
	}
	b.readSpan.Store(span)
	return b.Conn.SetReadDeadline(t)
}

// SetDeadline sets a deadline for the whole exchange (amqp091's handshake):
// Read does not re-arm it.
func (b *batchConn) SetDeadline(t time.Time) error {
	b.readSpan.Store(0)
	return b.Conn.SetDeadline(t)
}

// Read reads from the socket and, when bytes arrived, re-arms the read
// deadline by the span amqp091 last asked for. The library re-arms it from
// its heartbeater goroutine, which also sends heartbeats under the
// library's send lock; while a Write here waits for room (the broker stops
// reading a connection it blocks for a resource alarm), a publisher holds
// that lock, the heartbeater waits for it, and the deadline would expire
// three intervals later although the broker's heartbeats keep arriving:
// the connection dropped, every unconfirmed publish sent again. The
// deadline still expires when nothing arrives (a silent broker).
func (b *batchConn) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	if n > 0 {
		if span := b.readSpan.Load(); span > 0 {
			_ = b.Conn.SetReadDeadline(time.Now().Add(time.Duration(span)))
		}
	}
	return n, err
}

// Write queues p for the writer goroutine. It blocks only while
// maxBatchPending bytes are already waiting.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && len(b.pending) >= maxBatchPending {
		b.blocked++
		b.room.Wait()
		b.blocked--
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(b.pending) == 0 {
		b.more.Signal()
	}
	b.pending = append(b.pending, p...)
	return len(p), nil
}

// writeLoop hands everything pending to the socket in one write, until a
// write fails or the conn is closed.
func (b *batchConn) writeLoop() {
	defer close(b.done)
	var batch []byte
	b.mu.Lock()
	for {
		for len(b.pending) == 0 && b.err == nil {
			b.more.Wait()
		}
		if b.err != nil {
			b.mu.Unlock()
			return
		}
		batch, b.pending = b.pending, batch[:0]
		b.room.Broadcast()
		b.mu.Unlock()

		_, err := b.Conn.Write(batch)
		if cap(batch) > maxBatchKeep {
			batch = nil
		}

		b.mu.Lock()
		if err != nil {
			if b.err == nil {
				b.err = err
			}
			b.room.Broadcast()
			b.mu.Unlock()
			_ = b.Conn.Close() // amqp091's reader fails and shuts the connection down
			return
		}
	}
}

// Close closes the socket, dropping what is still pending, and waits for
// the writer goroutine. amqp091 closes the socket only after the broker
// answered connection.close (so everything before it was written) or after
// the connection failed (so nothing pending can be delivered anyway).
func (b *batchConn) Close() error {
	b.mu.Lock()
	if b.err == nil {
		b.err = net.ErrClosed
	}
	b.pending = nil
	b.more.Signal()
	b.room.Broadcast()
	b.mu.Unlock()
	err := b.Conn.Close() // also ends a write blocked in the socket
	<-b.done
	return err
}

// state reports the bytes pending and the Writes waiting for room.
func (b *batchConn) state() (pending, blocked int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending), b.blocked
}
