package rabbit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/backoff"
	"github.com/blacktree/blacktree/internal/broker"
)

// ErrAlreadySettled is returned by a second Ack or Nack of one delivery.
var ErrAlreadySettled = errors.New("rabbit: delivery already settled")

// consumeSession is one consumer connection with one channel. The consume
// loop owns it (reads deliveries and close notifications); calls on ch from
// other goroutines (ack, nack, cancel) go through mu.
type consumeSession struct {
	conn      amqpConn
	timeout   time.Duration // Config.RPCTimeout
	connClose chan *amqp.Error
	chClose   chan *amqp.Error
	tag       string
	// deliveries is used by the consume loop only: nil until consuming,
	// and after the consumer was cancelled or paused.
	deliveries <-chan amqp.Delivery
	// prefetch is the per-consumer window the current consumer was started
	// with, and qos the last one basic.qos set on ch (consume loop only).
	prefetch, qos int
	// baseTag is the first consumer's tag; starts counts consumers
	// started on ch (consume loop only, pacing.go).
	baseTag string
	starts  int
	// adoptions and adoptClose belong to the adoption channel (used by the
	// consume loop only).
	adoptions  <-chan amqp.Delivery
	adoptClose chan *amqp.Error

	mu   sync.Mutex // guards the following and every call on ch
	ch   *amqp.Channel
	dead bool // the channel is gone: its deliveries are stale
}

// kill marks the session dead (so its deliveries' acks fail fast with
// ErrStaleDelivery) and closes the connection.
func (s *consumeSession) kill() {
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
	s.conn.close(s.timeout)
}

// consumer is the consume side's shared state.
type consumer struct {
	log     hclog.Logger
	up      atomic.Bool  // consuming (or stopped on purpose) on a live channel
	stopped atomic.Bool  // StopConsuming was called
	stopReq chan stopReq // StopConsuming → consume loop
	running atomic.Bool  // the consume loop is running
	// window is the paced consumer's window (SetWindow); windowChanged
	// wakes the consume loop after it changed (pacing.go).
	window        atomic.Int64
	windowChanged chan struct{}
	// paused: a paced consumer is cancelled by pauseConsume and not yet
	// started again.
	paused atomic.Bool
}

// consumerSeq numbers generated consumer tags.
var consumerSeq atomic.Uint64

type stopReq struct{ done chan error }

func (cs *consumer) init(log hclog.Logger) {
	cs.log = log
	cs.stopReq = make(chan stopReq)
	cs.windowChanged = make(chan struct{}, 1)
}

// openConsume dials the consumer connection, declares the execute and
// dead-letter queues and opens a channel with the prefetch window set.
// Consuming starts in the consume loop.
func (c *Client) openConsume(ctx context.Context) (*consumeSession, error) {
	conn, err := c.dial(ctx, "consume")
	if err != nil {
		return nil, err
	}
	var ch, adoptCh *amqp.Channel
	var adoptions <-chan amqp.Delivery
	err = conn.bounded(c.cfg.RPCTimeout, "set up the consumer", func() error {
		if err := declareConsumeTopology(conn.Connection, c.cfg, c.cons.log); err != nil {
			return err
		}
		var err error
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("open consume channel: %w", err)
		}
		// global=false: per consumer, the only form quorum queues support.
		if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
			return fmt.Errorf("set the prefetch window: %w", err)
		}
		adoptCh, adoptions, err = c.openAdoptions(conn)
		return err
	})
	if err != nil {
		conn.close(c.cfg.RPCTimeout)
		return nil, fmt.Errorf("rabbit: %w", err)
	}
	tag := c.cfg.ConsumerTag
	if tag == "" {
		// Cancel needs the tag, so generate it here rather than in the library.
		tag = fmt.Sprintf("%s-%d", c.cfg.ConnectionName, consumerSeq.Add(1))
	}
	s := &consumeSession{conn: conn, timeout: c.cfg.RPCTimeout, ch: ch, tag: tag, adoptions: adoptions}
	s.connClose = conn.NotifyClose(make(chan *amqp.Error, 1))
	s.chClose = ch.NotifyClose(make(chan *amqp.Error, 1))
	s.adoptClose = adoptCh.NotifyClose(make(chan *amqp.Error, 1))
	return s, nil
}

// startConsume issues basic.qos (when prefetch differs from the last one
// set on s's channel) and basic.consume on s. RabbitMQ applies a
// per-consumer prefetch to the consumers started after it, so a new window
// needs a new consumer.
func (c *Client) startConsume(s *consumeSession, prefetch int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.bounded(s.timeout, "rabbit: start consuming", func() error {
		if s.qos != prefetch {
			// global=false: per consumer, the only form quorum queues support.
			if err := s.ch.Qos(prefetch, 0, false); err != nil {
				return fmt.Errorf("rabbit: set the prefetch window: %w", err)
			}
			s.qos = prefetch
		}
		s.tag = s.nextTag()
		d, err := s.ch.Consume(c.cfg.ExecuteQueue, s.tag, false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("rabbit: consume %q: %w", c.cfg.ExecuteQueue, err)
		}
		s.deliveries, s.prefetch = d, prefetch
		return nil
	})
}

// consumeLoop keeps a consume session alive until ctx ends, forwarding its
// deliveries to c.out.
func (c *Client) consumeLoop(ctx context.Context, s *consumeSession) {
	log := c.cons.log
	c.cons.running.Store(true)
	defer c.cons.running.Store(false)
	bo := backoff.New(c.cfg.ReconnectMin, c.cfg.ReconnectMax)
	for {
		if s == nil {
			var err error
			if s, err = c.openConsume(ctx); err != nil {
				d := bo.Next()
				log.Warn("reconnect failed", "error", err, "retry_in", d)
				if !c.idle(ctx, d) {
					return
				}
				continue
			}
			log.Info("reconnected", "url", MaskURL(c.cfg.URL))
		}
		since := time.Now()
		err := c.serveConsume(ctx, s)
		c.cons.up.Store(false)
		s.kill()
		s = nil
		if err == nil { // ctx ended
			return
		}
		if time.Since(since) > c.cfg.ReconnectMax {
			bo.Reset()
		}
		d := bo.Next()
		log.Warn("session lost; reconnecting", "error", err, "retry_in", d)
		if !c.idle(ctx, d) {
			return
		}
	}
}

// idle waits d while answering StopConsuming (nothing to cancel while
// down). It returns false when ctx ends.
func (c *Client) idle(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		case r := <-c.cons.stopReq:
			r.done <- nil
		}
	}
}

// pending is a delivery read from the broker but not yet handed to c.out.
type pending struct {
	d     broker.Delivery
	acker *acker
}

// serveConsume starts the consumer on s (unless stopped, or paced with no
// window) and forwards deliveries until s fails (returning why) or ctx ends
// (returning nil). Deliveries are queued locally while the reader of c.out
// is busy; the prefetch window bounds that queue.
func (c *Client) serveConsume(ctx context.Context, s *consumeSession) error {
	var queue []pending
	if err := c.followWindow(s, &queue); err != nil {
		return err
	}
	c.cons.up.Store(true)
	requeueAll := func() {
		for _, p := range queue {
			_ = p.acker.Nack(true)
		}
		queue = nil
	}
	for {
		var out chan broker.Delivery
		var next broker.Delivery
		if len(queue) > 0 {
			out, next = c.out, queue[0].d
		}
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.connClose:
			return fmt.Errorf("connection closed: %w", amqpErr(e))
		case e := <-s.chClose:
			return fmt.Errorf("channel closed: %w", amqpErr(e))
		case e := <-s.adoptClose:
			return fmt.Errorf("adoption channel closed: %w", amqpErr(e))
		case d, ok := <-s.adoptions:
			if !ok {
				return errors.New("adoption consumer ended")
			}
			c.noteAnnouncement(d.Body)
		case d, ok := <-s.deliveries:
			if !ok {
				s.deliveries = nil
				if s.ch.IsClosed() {
					return errors.New("channel closed")
				}
				if !c.cons.stopped.Load() {
					// The broker cancelled the consumer (queue deleted, ...).
					return errors.New("consumer cancelled by the broker")
				}
				continue
			}
			p := c.wrap(s, d)
			if c.cons.stopped.Load() {
				_ = p.acker.Nack(true) // never handed out: give it back
				continue
			}
			queue = append(queue, p)
		case out <- next:
			queue[0] = pending{}
			queue = queue[1:]
		case <-c.cons.windowChanged:
			if err := c.followWindow(s, &queue); err != nil {
				return err
			}
		case r := <-c.cons.stopReq:
			err := c.cancelConsume(s)
			requeueAll()
			r.done <- err
		}
	}
}

// cancelConsume issues basic.cancel for s's consumer (when it has one).
func (c *Client) cancelConsume(s *consumeSession) error {
	if s.deliveries == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil
	}
	return s.conn.bounded(s.timeout, "rabbit: cancel consumer", func() error {
		if err := s.ch.Cancel(s.tag, false); err != nil {
			return fmt.Errorf("rabbit: cancel consumer: %w", err)
		}
		return nil
	})
}

// StopConsuming cancels the consumer (basic.cancel) so that no new
// deliveries arrive, also after reconnects; deliveries already handed out
// stay ack-able. Deliveries received from the broker but not yet handed out
// are requeued. It is used to drain the hub.
func (c *Client) StopConsuming(ctx context.Context) error {
	c.cons.stopped.Store(true)
	if !c.cons.running.Load() {
		return nil
	}
	r := stopReq{done: make(chan error, 1)}
	select {
	case c.cons.stopReq <- r:
	case <-ctx.Done():
		return fmt.Errorf("rabbit: stop consuming: %w", ctx.Err())
	case <-c.closed:
		return nil
	}
	select {
	case err := <-r.done:
		if err == nil {
			c.cons.log.Info("consumer stopped")
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("rabbit: stop consuming: %w", ctx.Err())
	}
}

// wrap converts an amqp delivery to a broker.Delivery settled through s.
func (c *Client) wrap(s *consumeSession, d amqp.Delivery) pending {
	a := &acker{s: s, tag: d.DeliveryTag}
	return pending{
		acker: a,
		d: broker.Delivery{
			Body:          d.Body,
			MessageID:     d.MessageId,
			CorrelationID: d.CorrelationId,
			ContentType:   d.ContentType,
			Redelivered:   d.Redelivered,
			Acker:         a,
		},
	}
}

// acker settles one delivery on the channel that carried it. Safe for use
// from any goroutine; settles at most once.
type acker struct {
	s       *consumeSession
	tag     uint64
	settled atomic.Bool
}

// Ack implements broker.Acknowledger.
func (a *acker) Ack() error {
	return a.settle("ack", func(ch *amqp.Channel) error { return ch.Ack(a.tag, false) })
}

// Nack implements broker.Acknowledger. Without requeue the broker
// dead-letters the message to the dead-letter queue (when configured).
func (a *acker) Nack(requeue bool) error {
	return a.settle("nack", func(ch *amqp.Channel) error { return ch.Nack(a.tag, false, requeue) })
}

func (a *acker) settle(op string, f func(*amqp.Channel) error) error {
	if !a.settled.CompareAndSwap(false, true) {
		return ErrAlreadySettled
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if a.s.dead || a.s.ch.IsClosed() {
		return broker.ErrStaleDelivery
	}
	if err := f(a.s.ch); err != nil {
		if a.s.ch.IsClosed() || errors.Is(err, amqp.ErrClosed) {
			return broker.ErrStaleDelivery
		}
		return fmt.Errorf("rabbit: %s delivery: %w", op, err)
	}
	return nil
}
