package rabbit

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// QueueDepths returns the messages ready for delivery in each of the
// Client's queues (execute, dead-letter, status and ledger queue, those
// configured), by queue name, as passive queue.declare reports them: the
// broker's count of ready messages, without the ones delivered and not yet
// acknowledged. A queue that does not exist is left out. It uses a
// throw-away channel on the publisher connection (a passive declare of a
// missing queue closes its channel), bounded by Config.RPCTimeout.
func (c *Client) QueueDepths(ctx context.Context) (map[string]int, error) {
	s, err := c.pub.wait(ctx, c.closed)
	if err != nil {
		return nil, err
	}
	queues := []string{c.cfg.ExecuteQueue, c.cfg.DeadLetterQueue, c.cfg.StatusQueue, c.cfg.LedgerQueue}
	out := make(map[string]int, len(queues))
	err = s.conn.bounded(c.cfg.RPCTimeout, "rabbit: inspect queues", func() error {
		var ch *amqp.Channel
		defer func() {
			if ch != nil {
				_ = ch.Close()
			}
		}()
		for _, q := range queues {
			if q == "" {
				continue
			}
			if ch == nil || ch.IsClosed() {
				var err error
				if ch, err = s.conn.Channel(); err != nil {
					return fmt.Errorf("open inspection channel: %w", err)
				}
			}
			st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			var ae *amqp.Error
			switch {
			case errors.As(err, &ae) && ae.Code == amqp.NotFound:
				continue // the channel is closed; the next queue opens another
			case err != nil:
				return fmt.Errorf("inspect queue %s: %w", q, err)
			}
			out[q] = st.Messages
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ExecuteQueue is the name of the queue the Client consumes.
func (c *Client) ExecuteQueue() string { return c.cfg.ExecuteQueue }
