// Package rabbit is Blacktree's RabbitMQ adapter and the only package that
// imports amqp091-go. A Client consumes JobRequests from the execute queue
// and publishes JobResponses to the status queue, implementing the
// broker-neutral types of internal/broker (docs/protocol.md#queues).
//
// Lifecycle: New (validate, no I/O) → Connect (optional first dial, one
// clear error with the URL's password masked) → Run (consume, publish,
// reconnect) → StopConsuming (drain) → Shutdown (idempotent; closing the
// consumer connection hands unacked deliveries back to the broker).
// Every URL in a log line or error goes through MaskURL.
//
// # Connections and channels
//
// Consuming and publishing use separate AMQP connections, named
// "<ConnectionName>-consume" and "<ConnectionName>-publish", because
// RabbitMQ's flow control throttles whole connections: a blocked publisher
// must not delay acks. Each connection carries one long-lived channel.
// amqp091 channels are not safe for concurrent use, so every call on the
// consume channel (ack, nack, cancel) holds consumeSession.mu, and every
// basic.publish on the publish channel holds publishSession.sendMu; the
// consume loop goroutine alone reads deliveries and close notifications.
//
// The orphan ledger (ledger.go; docs/design/orphan-ledger.md) has a third
// connection, "<ConnectionName>-ledger", consuming the ledger queue
// (x-single-active-consumer, manual acks, no prefetch limit) with its own
// reconnect loop; every session is numbered (LedgerSession), so that the
// hub can tell the deliveries of an ended session. Ledger events are
// published like statuses (PublishLedger). StopConsuming leaves it
// running: a draining hub may still be the keeper.
//
// Job events (events.go, Config.EventsExchange) go to a durable topic
// exchange on a channel of the publisher connection of their own, opened
// (and the exchange declared) on first use after each reconnect: no
// confirms, not mandatory, best effort; a channel error there never
// touches the status publishes.
// QueueDepths (depth.go) counts the ready messages of the Client's queues
// with passive queue.declare on a throw-away channel of the publish
// connection, for the hub's autoscaling gauges.
// The cancel queue (cancels.go; Config.CancelQueue, off when empty) has a
// fourth connection, "<ConnectionName>-cancel", consuming it (manual acks,
// prefetch 64) with the same reconnect loop (openQueueConsumer is shared
// with the ledger); CancelDeliveries yields its messages. Cancels are
// passed on to every replica on the adoption exchange, as announcements
// of kind "cancel" (AnnounceCancel, CancelAnnouncements); an adoption has
// no kind, so replicas that predate cancels read one as an adoption that
// matches none of their jobs.
//
// # Writes
//
// amqp091 flushes after every publish, ack and heartbeat: one write system
// call each, made under the library's send lock. Every connection's socket
// is wrapped in a batchConn (batchconn.go): Write appends to a buffer and
// one writer goroutine per connection hands whatever has accumulated to the
// socket in one call, so under load many frames share a system call and the
// broker reads them together (docs/design/dispatch-throughput.md). The
// buffer is bounded
// (Write blocks past 256 KiB, so TCP flow control still reaches
// publishers); a failed write closes the socket, which amqp091 then reports
// as a lost connection. The batchConn also re-arms amqp091's read deadline
// whenever bytes arrive: the library re-arms it from its heartbeater, which
// waits behind a publisher blocked in Write during a resource alarm, so a
// long alarm would otherwise drop a healthy connection after three
// heartbeat intervals and publish every unconfirmed message again.
//
// # Reconnecting
//
// The library's experimental automatic recovery is not used. Each side runs
// a loop that watches NotifyClose of its connection and channel, and on
// failure redials with internal/backoff's jittered exponential backoff (ReconnectMin..
// ReconnectMax), re-declares its queues and, on the consume side,
// re-consumes (unless StopConsuming was called).
//
// Config.URL may list several nodes of one cluster, comma-separated
// (nodes.go): every dial tries them in turn, each once, and a pass that
// reaches none counts as one failed attempt before the backoff. The first
// dial of each connection starts at the first URL; a redial starts at the
// node after the one the connection last reached, so a node that has just
// failed is tried last. The two connections may land on different nodes.
// Quorum queues are reachable from any node of the cluster, so this is
// all failover needs on the client side, but for one thing: a nack on a
// quorum queue closes the publish channel (renewAfterNack), because a
// channel that published while the queue had no leader keeps being
// nacked for seconds after one is elected (docs/design/rabbitmq-cluster.md).
// Ready reports false while
// either side is down. Deliveries() is one channel for the Client's life.
// A delivery held when its channel died is stale: the broker has requeued
// it and will deliver it again (Redelivered set); its Ack/Nack returns
// broker.ErrStaleDelivery. A second Ack/Nack returns ErrAlreadySettled.
//
// # Publisher confirms
//
// The publish channel is in confirm mode and Publish uses
// PublishWithDeferredConfirmWithContext: the frames are written under a
// short mutex, the confirm is awaited outside it, so concurrent Publish
// calls pipeline rather than waiting one confirm at a time, and there is no
// NotifyPublish listener to deadlock. Publish returns nil only after the
// broker's ack, ErrNacked on a nack, and publishes again when the channel
// dies before the confirm arrives (at-least-once; consumers dedupe on
// jobId). While disconnected it waits for the next connection until its ctx
// ends.
//
// Messages are published mandatory, so a deleted queue is not a silent loss
// behind a positive confirm: the broker returns the message (basic.return,
// recorded before its ack is seen, see publishSession.ret1/ret2), and
// Publish declares the queue again and republishes when it is one of the
// Client's own queues, or fails with ErrUnroutable (PublishTo elsewhere).
// A body larger than the broker's max_message_size makes the broker close
// the channel (PRECONDITION_FAILED). Publish reads the close reason: that
// message fails with broker.ErrTooLarge instead of being published again
// on every new channel, the other publishes caught in the closing are
// published again, and the limit learnt refuses later larger bodies up
// front (as MaxBodySize does from the start), so they never close a
// channel under other jobs' publishes.
//
// # Queues and dead-lettering
//
// All queues are durable; QueueType "quorum" adds x-queue-type=quorum,
// "classic" (default) adds no x-queue-type so that queues declared by plain
// tools stay equivalent. The execute queue is declared with
// x-dead-letter-exchange "" (the default exchange) and
// x-dead-letter-routing-key = DeadLetterQueue (default
// "<ExecuteQueue>.dead", a durable queue of the same type), so a delivery
// nacked without requeue (an invalid JobRequest with no readable jobId) lands
// there for inspection. DisableDeadLetter drops the DLX; rejected messages are
// then discarded by the broker. When a queue already exists with different
// arguments, the broker answers PRECONDITION_FAILED (which closes the
// channel); the Client then declares it passively on a fresh channel, uses
// it as it is and logs a warning — its dead-lettering is whatever the
// existing queue has.
//
// # Prefetch and pacing
//
// A per-consumer prefetch window (basic.qos global=false, at most Prefetch,
// default 32) bounds the unacked deliveries one Client holds, identically on
// classic and quorum queues (docs/protocol.md#prefetch-and-holding). A
// paced Client (Config.Paced, pacing.go) starts paused and follows
// SetWindow: the consume loop cancels its consumer at a window of 0, and
// starts a new one with the window as its prefetch when it is positive
// (again when it has doubled): RabbitMQ applies a per-consumer qos only to
// consumers started after it. Deliveries that arrived before the cancel's
// cancel-ok are handed out as usual (docs/design/consumption.md).
package rabbit
