package rabbit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/broker"
)

// adoptionBuffer bounds announcements received but not yet read by the
// hub; past it they are dropped (they are best effort).
const adoptionBuffer = 1024

// declareAdoptionExchange declares the adoption exchange: a fanout that is
// not durable and deletes itself once the last replica's queue is gone, so
// it never outlives the hubs (or tests) that use it. Every replica declares
// it the same way before binding to it or publishing to it.
func (c *Client) declareAdoptionExchange(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(c.cfg.AdoptionExchange, amqp.ExchangeFanout, false, true, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", c.cfg.AdoptionExchange, err)
	}
	return nil
}

// openAdoptions binds an exclusive, server-named queue to the adoption
// exchange on conn and consumes it (auto-ack: an announcement is a hint,
// not work). Called by openConsume under its bounded setup; the queue goes
// away with the connection, and the next session binds a new one.
func (c *Client) openAdoptions(conn amqpConn) (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("open adoption channel: %w", err)
	}
	if err := c.declareAdoptionExchange(ch); err != nil {
		return nil, nil, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err == nil {
		err = ch.QueueBind(q.Name, "", c.cfg.AdoptionExchange, false, nil)
	}
	var d <-chan amqp.Delivery
	if err == nil {
		d, err = ch.Consume(q.Name, "", true, true, false, false, nil)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("consume adoptions from %q: %w", c.cfg.AdoptionExchange, err)
	}
	return ch, d, nil
}

// noteAnnouncement decodes an announcement of the adoption exchange and
// hands it to Adoptions or CancelAnnouncements, never blocking the consume
// loop.
func (c *Client) noteAnnouncement(body []byte) {
	var a announcement
	if err := json.Unmarshal(body, &a); err != nil || a.HubID == "" || a.JobID == "" {
		c.cons.log.Debug("ignoring a malformed announcement", "bytes", len(body))
		return
	}
	switch a.Kind {
	case "":
	case announcementKindCancel:
		c.noteCancel(a)
		return
	default:
		c.cons.log.Debug("ignoring an announcement of an unknown kind", "kind", safeKind(a.Kind))
		return
	}
	select {
	case c.adopt <- broker.Adoption{HubID: a.HubID, JobID: a.JobID, WorkerID: a.WorkerID}:
	default:
		// This hub may then report the job lost although another replica
		// publishes its result: a second status (docs/protocol.md#between-hub-replicas).
		c.cons.log.Warn("adoption announcement dropped: reader busy", "job_id", a.JobID)
	}
}

// safeKind bounds an announcement's kind before it is logged.
func safeKind(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Adoptions yields the adoption announcements of every Client bound to the
// exchange, this one's own included (filter on HubID). The channel lives
// as long as the Client and survives reconnects; announcements made while
// this Client was disconnected are not seen.
func (c *Client) Adoptions() <-chan broker.Adoption { return c.adopt }

// AnnounceAdoption publishes a to the adoption exchange, on a channel of
// the publisher connection of its own (a channel error there never touches
// the status publishes; a broker that does not answer within RPCTimeout
// has the whole connection dropped, as for any call). It declares the
// exchange first (it may have deleted
// itself with the last replica's queue) and does not wait for a confirm:
// an announcement is best effort. It waits for a publisher connection as
// long as ctx allows.
func (c *Client) AnnounceAdoption(ctx context.Context, a broker.Adoption) error {
	if a.HubID == "" || a.JobID == "" {
		return errors.New("rabbit: adoption needs a hub id and a job id")
	}
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("rabbit: encode adoption: %w", err)
	}
	if err := c.announce(ctx, body); err != nil {
		return fmt.Errorf("rabbit: announce adoption of %s: %w", a.JobID, err)
	}
	return nil
}

// announce publishes body to the adoption exchange (see AnnounceAdoption).
func (c *Client) announce(ctx context.Context, body []byte) error {
	s, err := c.pub.wait(ctx, c.closed)
	if err != nil {
		return err
	}
	s.adoptMu.Lock()
	defer s.adoptMu.Unlock()
	return s.conn.bounded(c.cfg.RPCTimeout, "rabbit: announce", func() error {
		if s.adoptCh == nil || s.adoptCh.IsClosed() {
			ch, err := s.conn.Channel()
			if err != nil {
				return fmt.Errorf("open adoption channel: %w", err)
			}
			s.adoptCh = ch
		}
		if err := c.declareAdoptionExchange(s.adoptCh); err != nil {
			return err
		}
		return s.adoptCh.PublishWithContext(ctx, c.cfg.AdoptionExchange, "", false, false,
			amqp.Publishing{ContentType: "application/json", Body: body})
	})
}
