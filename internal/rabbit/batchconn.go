package rabbit

import (
	"net"
	"sync"
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
// blocking the caller on the socket (docs/BENCHMARKS.md G17).
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
// One mutex, mu, owns the buffer; the writer goroutine is waited for by
// Close.
type batchConn struct {
	net.Conn // the socket: reads, deadlines and addresses pass through

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
