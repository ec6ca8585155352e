package rabbit

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/broker"
)

// TestPacedConsumer: a paced Client takes nothing until it has a window,
// then at most the window unacked; a window of 0 stops new deliveries
// while held ones stay ack-able; a window twice the running one restarts
// the consumer with it; and a reconnect keeps the pause.
func TestPacedConsumer(t *testing.T) {
	for _, qt := range []string{QueueTypeClassic, QueueTypeQuorum} {
		t.Run(qt, func(t *testing.T) {
			const total = 10
			e := newEnv(t, func(c *Config) { c.QueueType = qt; c.Paced = true })
			c := e.start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			for i := range total {
				if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte("{}"), MessageID: fmt.Sprint(i)}); err != nil {
					t.Fatalf("PublishTo() = %v", err)
				}
			}
			ready := func(want int) {
				t.Helper()
				waitFor(t, fmt.Sprintf("%d ready messages", want), 5*time.Second, func() bool { return e.admin.count(e.cfg.ExecuteQueue) == want })
			}
			expectNone(t, c, 500*time.Millisecond)
			ready(total)

			c.SetWindow(2)
			held := []broker.Delivery{receive(t, c, 5*time.Second), receive(t, c, 5*time.Second)}
			expectNone(t, c, 300*time.Millisecond)
			ready(total - 2)

			// Twice the running window: a new consumer, whose prefetch counts
			// only its own deliveries.
			c.SetWindow(4)
			for range 4 {
				held = append(held, receive(t, c, 5*time.Second))
			}
			expectNone(t, c, 300*time.Millisecond)
			ready(total - 6)

			// Deliveries sent before the broker's cancel-ok are handed out
			// too: RabbitMQ 3.10 sent a classic queue's cancelled consumer
			// more when an earlier consumer left unacked ones.
			c.SetWindow(0)
			waitFor(t, "consumer paused", 5*time.Second, c.cons.paused.Load)
			held = append(held, drainNow(c)...)
			for _, d := range held {
				if err := d.Ack(); err != nil {
					t.Fatalf("Ack() while paused = %v, want nil", err)
				}
			}
			expectNone(t, c, 500*time.Millisecond)
			left := total - len(held)
			ready(left)

			killConnection(t, e.cfg.ConnectionName+"-consume")
			waitFor(t, "client ready again", 10*time.Second, c.Ready)
			expectNone(t, c, 500*time.Millisecond)
			ready(left)

			c.SetWindow(100) // capped at Prefetch
			for range left {
				if err := receive(t, c, 5*time.Second).Ack(); err != nil {
					t.Fatalf("Ack() = %v", err)
				}
			}
			ready(0)
		})
	}
}

// drainNow takes the deliveries the Client hands out without waiting.
func drainNow(c *Client) []broker.Delivery {
	var out []broker.Delivery
	for {
		select {
		case d := <-c.Deliveries():
			out = append(out, d)
		case <-time.After(100 * time.Millisecond):
			return out
		}
	}
}

// TestUnpacedIgnoresWindow: without Config.Paced the consumer runs with
// the prefetch window whatever SetWindow says.
func TestUnpacedIgnoresWindow(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Prefetch = 2 })
	c := e.start(t)
	c.SetWindow(0)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte("{}"), MessageID: fmt.Sprint(i)}); err != nil {
			t.Fatalf("PublishTo() = %v", err)
		}
	}
	for range 2 {
		if err := receive(t, c, 5*time.Second).Ack(); err != nil {
			t.Fatalf("Ack() = %v", err)
		}
	}
	if err := receive(t, c, 5*time.Second).Ack(); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
}

// BenchmarkPauseResume measures one pause and restart of a paced
// consumer (basic.cancel, then basic.qos with a new window and
// basic.consume) on a queue with a backlog, per queue type: the price of
// following capacity, paid about once per few dozen jobs at a high rate
// (docs/design/consumption.md).
func BenchmarkPauseResume(b *testing.B) {
	for _, qt := range []string{QueueTypeClassic, QueueTypeQuorum} {
		b.Run(qt, func(b *testing.B) {
			e := newEnv(b, func(c *Config) { c.QueueType = qt; c.Paced = true })
			c, err := New(e.cfg, testLogger(b))
			if err != nil {
				b.Fatalf("New() = %v", err)
			}
			ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
			defer cancel()
			s, err := c.openConsume(ctx)
			if err != nil {
				b.Fatalf("openConsume() = %v", err)
			}
			defer s.kill()
			for i := range 100 {
				if err := e.admin.ch.PublishWithContext(ctx, "", e.cfg.ExecuteQueue, false, false, amqp.Publishing{Body: []byte("{}"), MessageId: fmt.Sprint(i)}); err != nil {
					b.Fatalf("publish = %v", err)
				}
			}
			var queue []pending
			b.ResetTimer()
			for i := range b.N {
				if err := c.startConsume(s, 3+i%2); err != nil {
					b.Fatalf("startConsume() = %v", err)
				}
				if err := c.pauseConsume(s, &queue); err != nil {
					b.Fatalf("pauseConsume() = %v", err)
				}
				for _, p := range queue {
					_ = p.acker.Nack(true)
				}
				queue = queue[:0]
			}
		})
	}
}
