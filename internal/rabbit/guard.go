package rabbit

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrBrokerTimeout is returned (wrapped) when the broker did not answer a
// call within Config.RPCTimeout; the connection was dropped.
var ErrBrokerTimeout = errors.New("the broker did not answer")

// amqpConn is an AMQP connection and the socket under it. amqp091 bounds
// only the handshake: channel open, queue declare, qos, consume, cancel and
// close wait for the broker's reply for as long as the connection lives,
// and heartbeats keep a connection alive while the broker boots, sits
// behind a resource alarm or otherwise does not answer. Closing the socket
// is the one way to end such a wait: amqp091's reader fails, the connection
// shuts down and every pending call returns.
type amqpConn struct {
	*amqp.Connection
	batch *batchConn // the socket under it, with batched writes (batchconn.go)
}

// bounded runs f, which makes calls on c, and drops the connection if f has
// not returned after d. The error then wraps ErrBrokerTimeout and names
// what was being done.
func (c amqpConn) bounded(d time.Duration, what string, f func() error) error {
	// The socket itself: closing it also ends a write the batching
	// writer has blocked in it.
	t := time.AfterFunc(d, func() { _ = c.batch.Conn.Close() })
	err := f()
	if !t.Stop() {
		// The timer fired (or is firing): the socket is closed under f,
		// whatever f returned.
		return fmt.Errorf("%s: %w within %s", what, ErrBrokerTimeout, d)
	}
	return err
}

// close closes the connection politely (connection.close, then close-ok),
// dropping the socket if the broker does not answer within d.
func (c amqpConn) close(d time.Duration) {
	_ = c.bounded(d, "close", c.Connection.Close)
}

// testHookAfterDial, when set (tests only), runs after each successful dial
// with the connection's role ("consume", "publish", "ledger", "declare").
// It is atomic: the ledger loop (ledger.go) dials on its own schedule,
// also while a test installs the hook.
var testHookAfterDial atomic.Pointer[func(role string)]
