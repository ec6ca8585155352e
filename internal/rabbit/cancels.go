package rabbit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/backoff"
	"github.com/blacktree/blacktree/internal/broker"
)

// cancelPrefetch bounds the cancel-queue deliveries a Client holds
// unsettled: the hub settles each as soon as it has told the other hubs.
const cancelPrefetch = 64

// cancelBuffer bounds cancel announcements received but not yet read by
// the hub; past it they are dropped and logged (the hub that consumed the
// cancel has applied it; only a job held here would miss it).
const cancelBuffer = 1024

// announcementKindCancel marks a cancel on the adoption exchange. An
// adoption carries no kind, so hubs that predate cancels read a cancel as
// an adoption by no worker, which matches no job of theirs.
const announcementKindCancel = "cancel"

// announcement is the union of what travels on the adoption exchange.
type announcement struct {
	Kind     string `json:"kind,omitempty"`
	HubID    string `json:"hubId"`
	JobID    string `json:"jobId"`
	WorkerID string `json:"workerId,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// CancelEnabled reports whether the Client consumes a cancel queue
// (Config.CancelQueue set).
func (c *Client) CancelEnabled() bool { return c.cfg.CancelQueue != "" }

// CancelDeliveries yields the cancel queue's deliveries, one JSON
// {"jobId","reason"} each, to be settled by the reader. The channel lives
// as long as the Client and is never closed.
func (c *Client) CancelDeliveries() <-chan broker.Delivery { return c.cancels }

// CancelAnnouncements yields the cancels every hub bound to the adoption
// exchange announces, this one's own included (filter on HubID). Best
// effort, like adoptions: announcements made while this Client was
// disconnected are not seen.
func (c *Client) CancelAnnouncements() <-chan broker.CancelRequest { return c.cancelAnn }

// AnnounceCancel tells every hub of the deployment to cancel r.JobID, on
// the adoption exchange (AnnounceAdoption's channel and bounds).
func (c *Client) AnnounceCancel(ctx context.Context, r broker.CancelRequest) error {
	if r.HubID == "" || r.JobID == "" {
		return errors.New("rabbit: cancel announcement needs a hub id and a job id")
	}
	body, err := json.Marshal(announcement{Kind: announcementKindCancel, HubID: r.HubID, JobID: r.JobID, Reason: r.Reason})
	if err != nil {
		return fmt.Errorf("rabbit: encode cancel: %w", err)
	}
	if err := c.announce(ctx, body); err != nil {
		return fmt.Errorf("rabbit: announce cancel of %s: %w", r.JobID, err)
	}
	return nil
}

// noteCancel hands a cancel announcement to CancelAnnouncements without
// ever blocking the consume loop.
func (c *Client) noteCancel(a announcement) {
	select {
	case c.cancelAnn <- broker.CancelRequest{HubID: a.HubID, JobID: a.JobID, Reason: a.Reason}:
	default:
		c.cons.log.Warn("cancel announcement dropped: reader busy", "job_id", a.JobID)
	}
}

// openQueueConsumer dials a connection of its own for purpose, declares
// queue with args and consumes it with manual acks (prefetch 0: no
// limit). Used for the ledger and the cancel queue.
func (c *Client) openQueueConsumer(ctx context.Context, purpose, queue string, args amqp.Table, prefetch int) (*consumeSession, error) {
	conn, err := c.dial(ctx, purpose)
	if err != nil {
		return nil, err
	}
	tag := fmt.Sprintf("%s-%s-%d", c.cfg.ConnectionName, purpose, consumerSeq.Add(1))
	var ch *amqp.Channel
	var d <-chan amqp.Delivery
	err = conn.bounded(c.cfg.RPCTimeout, "set up the "+purpose+" consumer", func() error {
		if err := declareQueue(conn.Connection, queue, args, c.log); err != nil {
			return err
		}
		var err error
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("open %s channel: %w", purpose, err)
		}
		if prefetch > 0 {
			if err := ch.Qos(prefetch, 0, false); err != nil {
				return fmt.Errorf("qos on %q: %w", queue, err)
			}
		}
		if d, err = ch.Consume(queue, tag, false, false, false, false, nil); err != nil {
			return fmt.Errorf("consume %q: %w", queue, err)
		}
		return nil
	})
	if err != nil {
		conn.close(c.cfg.RPCTimeout)
		return nil, fmt.Errorf("rabbit: %w", err)
	}
	s := &consumeSession{conn: conn, timeout: c.cfg.RPCTimeout, ch: ch, tag: tag, deliveries: d}
	s.connClose = conn.NotifyClose(make(chan *amqp.Error, 1))
	s.chClose = ch.NotifyClose(make(chan *amqp.Error, 1))
	return s, nil
}

// cancelLoop keeps a cancel-queue consumer alive until ctx ends. Like the
// ledger's, it does not stop with StopConsuming: a draining hub still
// passes cancels on.
func (c *Client) cancelLoop(ctx context.Context) {
	log := c.log.Named("cancel")
	bo := backoff.New(c.cfg.ReconnectMin, c.cfg.ReconnectMax)
	for {
		s, err := c.openQueueConsumer(ctx, "cancel", c.cfg.CancelQueue, queueArgs(c.cfg.QueueType, ""), cancelPrefetch)
		if err != nil {
			d := bo.Next()
			log.Warn("cancel consumer: connect failed", "error", err, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return
			}
			continue
		}
		since := time.Now()
		err = c.serveCancels(ctx, s)
		s.kill()
		if err == nil { // ctx ended
			return
		}
		if time.Since(since) > c.cfg.ReconnectMax {
			bo.Reset()
		}
		d := bo.Next()
		log.Warn("cancel consumer session lost; reconnecting", "error", err, "retry_in", d)
		if !sleepCtx(ctx, d) {
			return
		}
	}
}

// serveCancels forwards s's deliveries to c.cancels, queueing them locally
// (at most cancelPrefetch) while the reader is busy, until s fails
// (returning why) or ctx ends (returning nil).
func (c *Client) serveCancels(ctx context.Context, s *consumeSession) error {
	var queue []broker.Delivery
	for {
		var out chan broker.Delivery
		var next broker.Delivery
		if len(queue) > 0 {
			out, next = c.cancels, queue[0]
		}
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.connClose:
			return fmt.Errorf("connection closed: %w", amqpErr(e))
		case e := <-s.chClose:
			return fmt.Errorf("channel closed: %w", amqpErr(e))
		case d, ok := <-s.deliveries:
			if !ok {
				return errors.New("cancel consumer cancelled by the broker")
			}
			queue = append(queue, c.wrap(s, d).d)
		case out <- next:
			queue[0] = broker.Delivery{}
			queue = queue[1:]
		}
	}
}
