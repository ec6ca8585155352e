package main

// btctl talks to RabbitMQ with amqp091-go directly rather than through
// internal/rabbit. That adapter is the hub's: a reconnecting consumer of
// execute.queue and a confirmed publisher to status.queue that retries
// across broker restarts. btctl needs other, short-lived things: publish
// one JobRequest with `mandatory` (so a missing queue is an error, not a
// silently dropped message) and read status.queue while holding messages
// unacked so that they can be handed back. One connection, one channel,
// one goroutine (its owner); a broken connection is an error to report,
// never something to retry behind the operator's back.

import (
	"context"
	"errors"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/rabbit"
)

// amqpConn is one connection with one channel, owned by one goroutine.
type amqpConn struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
	url     string // redacted, for messages
}

// dialAMQP opens the connection and a channel in confirm mode.
func dialAMQP(c *common) (*amqpConn, error) {
	safe := rabbit.MaskURL(c.amqpURL)
	if _, err := amqp.ParseURI(c.amqpURL); err != nil {
		return nil, usageErr("--amqp-url %s: %v", safe, err)
	}
	conn, err := amqp.DialConfig(c.amqpURL, amqp.Config{
		Dial:       amqp.DefaultDial(c.connectTimeout),
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": "btctl"},
	})
	if err != nil {
		return nil, infraErr("cannot reach RabbitMQ at %s: %v", safe, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, infraErr("open AMQP channel on %s: %v", safe, err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = conn.Close()
		return nil, infraErr("enable publisher confirms on %s: %v", safe, err)
	}
	// Buffered so that the connection's reader never blocks on it: btctl
	// publishes one message per channel, so at most one return arrives.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	return &amqpConn{conn: conn, ch: ch, returns: returns, url: safe}, nil
}

// close closes the channel and connection. Unacked deliveries go back to
// their queues: that is how btctl hands back statuses it only looked at.
func (a *amqpConn) close() {
	_ = a.ch.Close()
	_ = a.conn.Close()
}

// queueErr turns a passive-declare failure into one clear line.
func (a *amqpConn) queueErr(queue, flag string, err error) error {
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return infraErr("queue %q does not exist on %s (is the hub running with %s %s?)", queue, a.url, flag, queue)
	}
	return infraErr("inspect queue %q on %s: %v", queue, a.url, err)
}

// inspect checks that queue exists (without declaring it: its arguments
// are the hub's business) and returns its ready-message count.
func (a *amqpConn) inspect(queue, flag string) (int, error) {
	q, err := a.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, a.queueErr(queue, flag, err)
	}
	return q.Messages, nil
}

// publishRequest publishes a JobRequest body to queue through the default
// exchange: persistent, mandatory, confirmed.
func (a *amqpConn) publishRequest(ctx context.Context, queue string, body []byte, jobID, correlationID string) error {
	dc, err := a.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		MessageId:     jobID,
		CorrelationId: correlationID,
		Timestamp:     time.Now(),
		AppId:         "btctl",
		Body:          body,
	})
	if err != nil {
		return infraErr("publish to %q on %s: %v", queue, a.url, err)
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return infraErr("waiting for the broker to confirm the job: %v", err)
	}
	// RabbitMQ sends basic.return before basic.ack for an unroutable
	// mandatory message, and amqp091 hands it over in frame order.
	select {
	case r := <-a.returns:
		return infraErr("queue %q does not exist on %s (broker returned the job: %s); is the hub running with --execute-queue %s?", queue, a.url, r.ReplyText, queue)
	default:
	}
	if !ok {
		return infraErr("broker refused (nacked) the job on %q", queue)
	}
	return nil
}

// consume starts a manual-ack consumer on queue holding at most prefetch
// unacked messages.
func (a *amqpConn) consume(queue string, prefetch int) (<-chan amqp.Delivery, error) {
	if err := a.ch.Qos(prefetch, 0, false); err != nil {
		return nil, infraErr("set prefetch on %s: %v", a.url, err)
	}
	// Not ConsumeWithContext: on cancellation it calls Cancel on the channel
	// from a goroutine of its own, racing our Close (two RPCs in flight on
	// one channel can swap replies and hang). Callers select on ctx instead;
	// close() ends the consumer.
	d, err := a.ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, infraErr("consume %q on %s: %v", queue, a.url, err)
	}
	return d, nil
}

// closedErr reports why the connection or channel went away while consuming.
func (a *amqpConn) closedErr(queue string) error {
	if a.conn.IsClosed() {
		return infraErr("lost the connection to RabbitMQ at %s while reading %q", a.url, queue)
	}
	return infraErr("RabbitMQ closed the channel while reading %q (consumer_timeout reached, or the queue was deleted)", queue)
}
