package rabbit

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/backoff"
	"github.com/blacktree/blacktree/internal/broker"
)

// ledgerArgs are the declare arguments of the ledger queue: the configured
// type, no dead-lettering, and a single active consumer, so that one hub
// replica at a time (the keeper) receives the events and the next one
// takes over the unacked ones when it goes (docs/design/orphan-ledger.md).
func ledgerArgs(queueType string) amqp.Table {
	args := queueArgs(queueType, "")
	args["x-single-active-consumer"] = true
	return args
}

// LedgerEnabled reports whether the Client has a ledger queue
// (Config.LedgerQueue, not disabled).
func (c *Client) LedgerEnabled() bool { return c.cfg.LedgerQueue != "" }

// PublishLedger is Publish to the ledger queue: persistent, confirmed,
// published again across reconnects (at-least-once).
func (c *Client) PublishLedger(ctx context.Context, m broker.Message) error {
	if c.cfg.LedgerQueue == "" {
		return errors.New("rabbit: the ledger queue is disabled")
	}
	return c.PublishTo(ctx, c.cfg.LedgerQueue, m)
}

// LedgerDeliveries yields the ledger queue's deliveries while this Client
// is the queue's active consumer. The channel lives as long as the Client
// and is never closed; each delivery carries the number of the consumer
// session it came on.
func (c *Client) LedgerDeliveries() <-chan broker.LedgerDelivery { return c.ledger }

// LedgerSession returns the number of the live ledger consumer session, or
// 0 while there is none. Deliveries of any other session are stale.
func (c *Client) LedgerSession() uint64 { return c.ledgerSession.Load() }

// openLedger dials the ledger connection, declares the ledger queue and
// consumes it with manual acks and no prefetch limit: the keeper holds
// every event that is still the latest word on a job, and a bounded window
// could fill with those and starve it of the newer events that release
// them. The number held is bounded by the running jobs and the hubs.
func (c *Client) openLedger(ctx context.Context) (*consumeSession, error) {
	return c.openQueueConsumer(ctx, "ledger", c.cfg.LedgerQueue, ledgerArgs(c.cfg.QueueType), 0)
}

// ledgerLoop keeps a ledger consumer session alive until ctx ends. It does
// not stop with StopConsuming: a draining hub may still be the keeper.
func (c *Client) ledgerLoop(ctx context.Context) {
	log := c.log.Named("ledger")
	bo := backoff.New(c.cfg.ReconnectMin, c.cfg.ReconnectMax)
	for {
		s, err := c.openLedger(ctx)
		if err != nil {
			d := bo.Next()
			log.Warn("ledger consumer: connect failed", "error", err, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return
			}
			continue
		}
		id := c.ledgerSeq.Add(1)
		c.ledgerSession.Store(id)
		since := time.Now()
		err = c.serveLedger(ctx, s, id)
		c.ledgerSession.Store(0)
		s.kill()
		if err == nil { // ctx ended
			return
		}
		if time.Since(since) > c.cfg.ReconnectMax {
			bo.Reset()
		}
		d := bo.Next()
		log.Warn("ledger consumer session lost; reconnecting", "error", err, "retry_in", d)
		if !sleepCtx(ctx, d) {
			return
		}
	}
}

// serveLedger forwards s's deliveries to c.ledger, queueing them locally
// while the reader is busy, until s fails (returning why) or ctx ends
// (returning nil).
func (c *Client) serveLedger(ctx context.Context, s *consumeSession, id uint64) error {
	var queue []broker.LedgerDelivery
	for {
		var out chan broker.LedgerDelivery
		var next broker.LedgerDelivery
		if len(queue) > 0 {
			out, next = c.ledger, queue[0]
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
				return errors.New("ledger consumer cancelled by the broker")
			}
			queue = append(queue, broker.LedgerDelivery{Delivery: c.wrap(s, d).d, Session: id})
		case out <- next:
			queue[0] = broker.LedgerDelivery{}
			queue = queue[1:]
		}
	}
}
