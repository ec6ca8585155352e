package rabbit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrNoEvents is returned by PublishEvent and OpenEvents when the Client
// has no Config.EventsExchange.
var ErrNoEvents = errors.New("rabbit: no events exchange configured")

// eventChannel is the channel job events are published on: one of the
// publisher connection's, opened on first use and again after it or its
// connection closed. Events are best effort, so the channel is not in
// confirm mode and publishes are not mandatory: an event nobody is bound
// for is dropped by the broker, and a channel error (the exchange deleted
// under it) never touches the status publishes.
type eventChannel struct {
	mu   sync.Mutex      // guards the following; held across one publish
	sess *publishSession // the session ch belongs to
	ch   *amqp.Channel
}

// EventsEnabled reports whether Config.EventsExchange is set.
func (c *Client) EventsEnabled() bool { return c.cfg.EventsExchange != "" }

// declareEventsExchange declares the durable topic exchange name on a
// channel of its own (a failed declare closes the channel). An exchange
// that exists with other properties (PRECONDITION_FAILED) is used as it
// is, with a warning, as declareQueue does for queues.
func declareEventsExchange(conn *amqp.Connection, name string, log hclog.Logger) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	err = ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil)
	if err == nil {
		return ch.Close()
	}
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
		_ = ch.Close()
		return fmt.Errorf("declare exchange %q: %w", name, err)
	}
	ch, err = conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if perr := ch.ExchangeDeclarePassive(name, amqp.ExchangeTopic, true, false, false, false, nil); perr != nil {
		return fmt.Errorf("declare exchange %q: %w", name, perr)
	}
	log.Warn("exchange exists with other properties; using it as it is", "exchange", name, "error", aerr.Reason)
	return nil
}

// OpenEvents waits for a publisher connection (as long as ctx allows),
// declares the events exchange and opens the events channel, so that
// consumers can bind before the first event. PublishEvent does the same
// by itself after a reconnect.
func (c *Client) OpenEvents(ctx context.Context) error {
	s, err := c.eventsSession(ctx)
	if err != nil {
		return err
	}
	c.events.mu.Lock()
	defer c.events.mu.Unlock()
	_, err = c.eventsChannelLocked(s)
	return err
}

// PublishEvent publishes body to the events exchange with routingKey,
// transient, without a confirm and not mandatory: best effort. It waits
// for a publisher connection as long as ctx allows; like Publish, a write
// blocked by the broker's flow control waits for it. A write that fails is
// not retried.
func (c *Client) PublishEvent(ctx context.Context, routingKey string, body []byte) error {
	s, err := c.eventsSession(ctx)
	if err != nil {
		return err
	}
	c.events.mu.Lock()
	defer c.events.mu.Unlock()
	ch, err := c.eventsChannelLocked(s)
	if err != nil {
		return err
	}
	err = ch.PublishWithContext(ctx, c.cfg.EventsExchange, routingKey, false, false, amqp.Publishing{
		ContentType: "application/json",
		Body:        body,
	})
	if err != nil {
		return fmt.Errorf("rabbit: publish event %s: %w", routingKey, err)
	}
	return nil
}

// eventsSession waits for an open publish session.
func (c *Client) eventsSession(ctx context.Context) (*publishSession, error) {
	if c.cfg.EventsExchange == "" {
		return nil, ErrNoEvents
	}
	return c.pub.wait(ctx, c.closed)
}

// eventsChannelLocked returns the events channel of s, declaring the
// exchange and opening the channel when s has none open yet (a new
// session, or the channel closed under a publish). Every call is bounded
// by RPCTimeout, as for any setup call.
func (c *Client) eventsChannelLocked(s *publishSession) (*amqp.Channel, error) {
	ev := &c.events
	if ev.sess == s && ev.ch != nil && !ev.ch.IsClosed() {
		return ev.ch, nil
	}
	ev.sess, ev.ch = nil, nil
	var ch *amqp.Channel
	err := s.conn.bounded(c.cfg.RPCTimeout, "open the events channel", func() error {
		if err := declareEventsExchange(s.conn.Connection, c.cfg.EventsExchange, c.pub.log); err != nil {
			return err
		}
		var err error
		if ch, err = s.conn.Channel(); err != nil {
			return fmt.Errorf("open events channel: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rabbit: %w", err)
	}
	ev.sess, ev.ch = s, ch
	return ch, nil
}
