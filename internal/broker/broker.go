// Package broker holds the broker-neutral types that pass between the hub's
// Dispatcher and a message-broker adapter (internal/rabbit is the RabbitMQ
// one). The hub depends on these types and on a small interface of its own,
// never on amqp091-go.
package broker

import (
	"context"
	"errors"
)

// ErrClosed is returned by adapters that have been shut down.
var ErrClosed = errors.New("broker: closed")

// ErrStaleDelivery is returned by Acknowledger methods when the channel that
// carried the delivery is gone (e.g. after a broker restart). The broker has
// already requeued such a delivery and will deliver it again.
var ErrStaleDelivery = errors.New("broker: delivery belongs to a closed channel")

// ErrTooLarge is returned by Publish when the broker refuses a message for
// its size (or the adapter knows it would). Publishing the same body again
// cannot succeed.
var ErrTooLarge = errors.New("broker: message too large")

// Acknowledger settles one delivery. Implementations are safe for use from
// any goroutine; each delivery is settled at most once.
type Acknowledger interface {
	// Ack removes the message from the queue.
	Ack() error
	// Nack returns the message to the queue (requeue) or dead-letters /
	// drops it (no requeue).
	Nack(requeue bool) error
}

// Delivery is one message consumed from the job queue.
type Delivery struct {
	// Body is the message payload (JSON JobRequest).
	Body []byte
	// MessageID and CorrelationID are the AMQP properties, when set.
	MessageID     string
	CorrelationID string
	// ContentType is the AMQP content_type property, when set.
	ContentType string
	// Redelivered is true when the broker delivered this message before.
	Redelivered bool
	// Acker settles the delivery.
	Acker Acknowledger
}

// Ack acknowledges the delivery.
func (d Delivery) Ack() error { return d.Acker.Ack() }

// Nack negatively acknowledges the delivery.
func (d Delivery) Nack(requeue bool) error { return d.Acker.Nack(requeue) }

// Message is one message to publish to the status queue.
type Message struct {
	// Body is the payload (JSON JobResponse).
	Body []byte
	// MessageID is set to the job id.
	MessageID string
	// CorrelationID is copied from the request, when it had one.
	CorrelationID string
}

// Publisher publishes status messages with publisher confirms.
type Publisher interface {
	// Publish returns nil only once the broker has confirmed the message.
	// It waits across reconnects until ctx ends.
	Publish(ctx context.Context, msg Message) error
}

// Adoption announces, to every hub replica, that hub HubID took over job
// JobID from worker WorkerID when that worker registered with it (running
// the job, or holding its unacknowledged result). The replica the worker
// left then drops the job instead of reporting it lost after its grace
// period. Announcements are best effort: one that is lost leaves the old
// behaviour (a lost report followed by the real result).
type Adoption struct {
	HubID    string `json:"hubId"`
	JobID    string `json:"jobId"`
	WorkerID string `json:"workerId"`
}

// CancelRequest asks every hub of a deployment to cancel job JobID (hub
// HubID consumed it from the cancel queue or took it on its AdminService).
// Announcements are best effort; the announcing hub has applied the cancel
// itself.
type CancelRequest struct {
	HubID  string `json:"hubId"`
	JobID  string `json:"jobId"`
	Reason string `json:"reason,omitempty"`
}

// LedgerDelivery is one message of the ledger queue, which holds the
// liveness events of accepted jobs (docs/design/orphan-ledger.md). Session
// numbers the consumer session that carried it: deliveries of an earlier
// session are stale (the broker gave them back to the queue when that
// session ended, and delivers them again).
type LedgerDelivery struct {
	Delivery
	Session uint64
}
