package rabbit

import "fmt"

// SetWindow sets how many deliveries a paced Client (Config.Paced) may
// hold unacknowledged: the consumer runs only while the window is
// positive, with a per-consumer prefetch of the window capped at
// Config.Prefetch; 0 pauses it (basic.cancel), so the broker keeps every
// further message ready for other consumers. It never blocks: the consume
// loop applies the latest window, so a burst of calls costs at most one
// pause or restart (docs/design/consumption.md). An unpaced Client ignores
// it.
func (c *Client) SetWindow(n int) {
	c.cons.window.Store(int64(max(n, 0)))
	select {
	case c.cons.windowChanged <- struct{}{}:
	default: // a wake-up is already due; it reads the latest window
	}
}

// targetPrefetch is the prefetch the consumer should run with now: 0 when
// it should not run.
func (c *Client) targetPrefetch() int {
	switch {
	case c.cons.stopped.Load():
		return 0
	case !c.cfg.Paced:
		return c.cfg.Prefetch
	}
	return int(min(c.cons.window.Load(), int64(c.cfg.Prefetch)))
}

// followWindow starts, pauses or restarts s's consumer so that it runs
// with targetPrefetch. A running consumer is restarted only once the
// target has at least doubled: a per-consumer prefetch cannot change
// without a new consumer, and the window shrinks to 0 (a pause) whenever
// the hub has no free slot, which bounds what it holds then. Once
// StopConsuming was called, the consumer is StopConsuming's.
func (c *Client) followWindow(s *consumeSession, queue *[]pending) error {
	if c.cons.stopped.Load() {
		return nil
	}
	want := c.targetPrefetch()
	switch {
	case s.deliveries == nil && want > 0:
		c.cons.paused.Store(false)
		return c.startConsume(s, want)
	case s.deliveries != nil && want == 0:
		return c.pauseConsume(s, queue)
	case s.deliveries != nil && want >= 2*s.prefetch:
		if err := c.pauseConsume(s, queue); err != nil {
			return err
		}
		return c.startConsume(s, want)
	}
	return nil
}

// pauseConsume cancels s's consumer and queues the deliveries that arrived
// before the broker's cancel-ok: they were sent, so they are the hub's to
// settle. amqp091 closes the consumer's channel once it has handed them
// all over, so the drain ends.
func (c *Client) pauseConsume(s *consumeSession, queue *[]pending) error {
	if err := c.cancelConsume(s); err != nil {
		return err
	}
	for d := range s.deliveries {
		*queue = append(*queue, c.wrap(s, d))
	}
	s.deliveries, s.prefetch = nil, 0
	c.cons.paused.Store(true)
	return nil
}

// nextTag is the tag of the next consumer started on s: the configured or
// generated tag for the first, then that tag with a sequence number. A
// consumer started after a cancel never reuses a tag on the channel:
// RabbitMQ 3.10 closed the connection (INTERNAL_ERROR, a function_clause
// in rabbit_channel:handle_deliver0) when a quorum queue delivered to a
// new consumer under the tag of a cancelled one whose deliveries were
// still unacked.
func (s *consumeSession) nextTag() string {
	if s.starts == 0 {
		s.baseTag = s.tag
	}
	s.starts++
	if s.starts == 1 {
		return s.baseTag
	}
	return fmt.Sprintf("%s.%d", s.baseTag, s.starts)
}
