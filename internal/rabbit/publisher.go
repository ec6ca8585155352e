package rabbit

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/backoff"
	"github.com/blacktree/blacktree/internal/broker"
)

// ErrNacked is returned by Publish when the broker negatively confirmed the
// message (it did not take responsibility for it).
var ErrNacked = errors.New("rabbit: broker nacked the message")

// ErrUnroutable is returned by PublishTo when the broker returned the
// mandatory message because no queue of that name exists.
var ErrUnroutable = errors.New("rabbit: message returned unroutable (no such queue)")

// MaxBodySize is the largest max_message_size RabbitMQ accepts (512 MiB;
// its default is 16 MiB from 4.0, 128 MiB before). A larger message is
// refused up front.
const MaxBodySize = 512 << 20

// tooLargeRe matches the reason RabbitMQ gives when it closes a channel
// (PRECONDITION_FAILED, 406) over a message larger than max_message_size:
// "message size 20971520 is larger than configured max size 16777216".
var tooLargeRe = regexp.MustCompile(`message size (\d+) is larger than (?:configured )?max size (\d+)`)

// brokerSizeLimit reads the broker's max_message_size from the error that
// closed a channel, or returns 0 if the channel closed for another reason.
func brokerSizeLimit(e *amqp.Error) int {
	if e == nil || e.Code != amqp.PreconditionFailed {
		return 0
	}
	m := tooLargeRe.FindStringSubmatch(e.Reason)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[2])
	if err != nil {
		return 0
	}
	return n
}

// publishSession is one publisher connection with one confirm-mode channel.
type publishSession struct {
	conn      amqpConn
	ch        *amqp.Channel
	connClose chan *amqp.Error
	chClose   chan *amqp.Error
	blocked   chan amqp.Blocking
	// ret1 and ret2 are two unbuffered listeners for basic.return. The
	// library hands a return to each in turn before it reads the message's
	// basic.ack; receiving from ret2 only after recording the return from
	// ret1 guarantees the record exists when the publisher sees the ack.
	ret1, ret2 chan amqp.Return

	retMu    sync.Mutex     // guards returned
	returned map[retKey]int // returns not yet claimed by their Publish

	// sendMu serialises basic.publish on ch: amqp091 channels are not safe
	// for concurrent use (#242). It is held only while the frames are
	// written; confirms are awaited outside it, so publishes pipeline.
	sendMu sync.Mutex

	adoptMu sync.Mutex    // guards adoptCh
	adoptCh *amqp.Channel // adoption announcements; opened on first use

	// why receives the error that closes ch; amqp091 closes it after a
	// clean close. closeReason reads it once.
	why     chan *amqp.Error
	whyMu   sync.Mutex // guards whyErr and whyRead
	whyErr  *amqp.Error
	whyRead bool
}

// closeReasonWait bounds how long closeReason waits for the error of a
// channel that says it is closed: amqp091 marks a channel closed before it
// tells the listeners why.
const closeReasonWait = time.Second

// closeReason is the error that closed ch, or nil (closed cleanly, or no
// reason within closeReasonWait). Call it only once ch.IsClosed().
func (s *publishSession) closeReason() *amqp.Error {
	s.whyMu.Lock()
	defer s.whyMu.Unlock()
	if !s.whyRead {
		t := time.NewTimer(closeReasonWait)
		defer t.Stop()
		select {
		case e := <-s.why: // nil once closed without an error
			s.whyErr = e
		case <-t.C: // given up for this session: no other caller waits again
		}
		s.whyRead = true
	}
	return s.whyErr
}

type retKey struct{ queue, messageID string }

func (s *publishSession) close(timeout time.Duration) { s.conn.close(timeout) }

func (s *publishSession) noteReturn(r amqp.Return) {
	s.retMu.Lock()
	s.returned[retKey{r.RoutingKey, r.MessageId}]++
	s.retMu.Unlock()
}

// takeReturn claims one recorded return of (queue, messageID). Publishes to
// one queue route alike, so any return of the same key stands for this one.
func (s *publishSession) takeReturn(queue, messageID string) bool {
	s.retMu.Lock()
	defer s.retMu.Unlock()
	k := retKey{queue, messageID}
	if s.returned[k] == 0 {
		return false
	}
	if s.returned[k]--; s.returned[k] == 0 {
		delete(s.returned, k)
	}
	return true
}

// publisher holds the current publish session for concurrent Publish calls.
type publisher struct {
	log hclog.Logger
	up  atomic.Bool // a session is installed and open

	mu      sync.Mutex      // guards the following
	cur     *publishSession // nil while disconnected
	changed chan struct{}   // closed (and replaced) whenever cur changes
}

func (p *publisher) init(log hclog.Logger) {
	p.log = log
	p.changed = make(chan struct{})
}

// set installs s (nil while down) and wakes waiting publishers.
func (p *publisher) set(s *publishSession) {
	p.mu.Lock()
	p.cur = s
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	p.up.Store(s != nil)
}

// wait returns an open session, waiting for one across reconnects.
func (p *publisher) wait(ctx context.Context, closed <-chan struct{}) (*publishSession, error) {
	for {
		p.mu.Lock()
		s, changed := p.cur, p.changed
		p.mu.Unlock()
		if s != nil && !s.ch.IsClosed() {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("rabbit: publish: waiting for the broker: %w", ctx.Err())
		case <-closed:
			return nil, broker.ErrClosed
		}
	}
}

// openPublish dials the publisher connection, declares the status queue and
// opens a confirm-mode channel.
func (c *Client) openPublish(ctx context.Context) (*publishSession, error) {
	conn, err := c.dial(ctx, "publish")
	if err != nil {
		return nil, err
	}
	var ch *amqp.Channel
	err = conn.bounded(c.cfg.RPCTimeout, "set up the publisher", func() error {
		if err := declarePublishTopology(conn.Connection, c.cfg, c.pub.log); err != nil {
			return err
		}
		var err error
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("open publish channel: %w", err)
		}
		if err := ch.Confirm(false); err != nil {
			return fmt.Errorf("enable publisher confirms: %w", err)
		}
		return nil
	})
	if err != nil {
		conn.close(c.cfg.RPCTimeout)
		return nil, fmt.Errorf("rabbit: %w", err)
	}
	s := &publishSession{conn: conn, ch: ch, returned: map[retKey]int{}}
	s.ret1 = ch.NotifyReturn(make(chan amqp.Return))
	s.ret2 = ch.NotifyReturn(make(chan amqp.Return))
	// Buffered: the library sends at most one close error per listener.
	s.connClose = conn.NotifyClose(make(chan *amqp.Error, 1))
	s.chClose = ch.NotifyClose(make(chan *amqp.Error, 1))
	s.why = ch.NotifyClose(make(chan *amqp.Error, 1))
	s.blocked = conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	return s, nil
}

// publishLoop keeps a publish session installed until ctx ends.
func (c *Client) publishLoop(ctx context.Context, s *publishSession) {
	log := c.pub.log
	bo := backoff.New(c.cfg.ReconnectMin, c.cfg.ReconnectMax)
	for {
		if s == nil {
			var err error
			if s, err = c.openPublish(ctx); err != nil {
				d := bo.Next()
				log.Warn("reconnect failed", "error", err, "retry_in", d)
				if !sleepCtx(ctx, d) {
					return
				}
				continue
			}
			log.Info("reconnected", "url", MaskURL(c.cfg.URL))
		}
		c.pub.set(s)
		since := time.Now()
		err := c.watchPublish(ctx, s)
		c.pub.set(nil)
		s.close(c.cfg.RPCTimeout)
		s = nil
		if err == nil { // ctx ended
			return
		}
		if time.Since(since) > c.cfg.ReconnectMax {
			bo.Reset()
		}
		d := bo.Next()
		log.Warn("session lost; reconnecting", "error", err, "retry_in", d)
		if !sleepCtx(ctx, d) {
			return
		}
	}
}

// watchPublish waits until the session fails (returning why) or ctx ends
// (returning nil). It logs flow-control blocking, during which publishes
// stall.
func (c *Client) watchPublish(ctx context.Context, s *publishSession) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-s.connClose:
			return fmt.Errorf("connection closed: %w", amqpErr(e))
		case e := <-s.chClose:
			return fmt.Errorf("channel closed: %w", amqpErr(e))
		case r, ok := <-s.ret1:
			if !ok {
				s.ret1 = nil
				continue
			}
			s.noteReturn(r)
			<-s.ret2 // releases the library only once the return is recorded
		case b, ok := <-s.blocked:
			if !ok {
				s.blocked = nil
				continue
			}
			if b.Active {
				c.pub.log.Warn("broker blocked the publisher connection", "reason", b.Reason)
			} else {
				c.pub.log.Info("broker unblocked the publisher connection")
			}
		}
	}
}

// Publish publishes m to the status queue (persistent, application/json,
// message_id, correlation_id) and returns nil only once the broker has
// confirmed it. A message whose channel dies before its confirm is
// published again on the next connection (at-least-once: consumers dedupe
// on jobId). It waits across reconnects until ctx ends; a broker nack is
// ErrNacked; after Shutdown it returns broker.ErrClosed.
func (c *Client) Publish(ctx context.Context, m broker.Message) error {
	return c.PublishTo(ctx, c.cfg.StatusQueue, m)
}

// publishRetryPause is how long Publish waits after a failed write before
// trying again (the connection is being torn down meanwhile).
const publishRetryPause = 50 * time.Millisecond

// PublishTo is Publish to any queue via the default exchange (btctl and
// tests use it to submit JobRequests to the execute queue, or arbitrary
// bytes as invalid ones).
func (c *Client) PublishTo(ctx context.Context, queue string, m broker.Message) error {
	if limit := c.sizeLimit(); len(m.Body) > limit {
		return fmt.Errorf("rabbit: publish: body of %d bytes exceeds %d: %w", len(m.Body), limit, broker.ErrTooLarge)
	}
	msg := amqp.Publishing{
		DeliveryMode:  amqp.Persistent,
		ContentType:   "application/json",
		MessageId:     m.MessageID,
		CorrelationId: m.CorrelationID,
		Timestamp:     time.Now(),
		Body:          m.Body,
	}
	for {
		s, err := c.pub.wait(ctx, c.closed)
		if err != nil {
			return err
		}
		s.sendMu.Lock()
		// mandatory: a missing queue comes back as basic.return (then ack)
		// instead of the message vanishing with a positive confirm.
		dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, msg)
		s.sendMu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("rabbit: publish: %w", ctx.Err())
			}
			if s.ch.IsClosed() || errors.Is(err, amqp.ErrClosed) {
				if err := c.refusedForSize(s, m); err != nil {
					return err
				}
				continue // wait for the next session
			}
			// A failed write (e.g. connection reset) means the connection is
			// going down; amqp091 shuts it down asynchronously, so the
			// channel may not say closed yet. Give it a moment, then wait
			// for the next session and publish again: the message must not
			// be dropped across an outage.
			c.pub.log.Debug("publish write failed; retrying on the next session", "job_id", m.MessageID, "error", err)
			t := time.NewTimer(publishRetryPause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("rabbit: publish: %w", ctx.Err())
			case <-c.closed:
				t.Stop()
				return broker.ErrClosed
			}
			continue
		}
		select {
		case <-dc.Done():
		case <-ctx.Done():
			return fmt.Errorf("rabbit: publish: waiting for confirm: %w", ctx.Err())
		case <-c.closed:
			return broker.ErrClosed
		}
		if dc.Acked() {
			if !s.takeReturn(queue, m.MessageID) {
				return nil
			}
			if !c.ownsQueue(queue) {
				return fmt.Errorf("%w: %q", ErrUnroutable, queue)
			}
			// One of our queues was deleted under us: declare it again.
			c.pub.log.Warn("queue missing; declaring it again", "queue", queue, "job_id", m.MessageID)
			if err := c.redeclare(s, queue); err != nil {
				return fmt.Errorf("rabbit: publish: %w", err)
			}
			continue
		}
		// The library nacks outstanding confirms when the channel closes,
		// after marking it closed: that is a lost publish, not a broker nack.
		if s.ch.IsClosed() {
			if err := c.refusedForSize(s, m); err != nil {
				return err
			}
			c.pub.log.Debug("channel closed before confirm; publishing again", "job_id", m.MessageID)
			continue
		}
		c.renewAfterNack(s)
		return ErrNacked
	}
}

// refusedForSize tells, for a publish whose channel s closed before its
// confirm, whether the broker closed it over a message larger than its
// max_message_size and m is that large: then publishing m again would
// close the next channel too, and it returns an error wrapping
// broker.ErrTooLarge. The limit learnt is kept, so that later bodies over
// it are refused before they reach the broker and disturb other
// publishes. A smaller m was only caught in the closing (another message
// was too large): it returns nil and m is published again.
func (c *Client) refusedForSize(s *publishSession, m broker.Message) error {
	limit := brokerSizeLimit(s.closeReason())
	if limit <= 0 {
		return nil
	}
	if c.learnSizeLimit(limit) {
		c.pub.log.Warn("broker refused a message over its max_message_size; refusing larger ones up front", "max_message_size", limit)
	}
	if len(m.Body) <= limit {
		return nil
	}
	return fmt.Errorf("rabbit: publish: body of %d bytes exceeds the broker's max_message_size %d: %w", len(m.Body), limit, broker.ErrTooLarge)
}

// sizeLimit is the largest body Publish sends: MaxBodySize, or less once
// the broker refused a message for its size.
func (c *Client) sizeLimit() int {
	if n := c.brokerMaxBody.Load(); n > 0 {
		return int(n)
	}
	return MaxBodySize
}

// learnSizeLimit records the broker's max_message_size; it reports whether
// that changed what sizeLimit returns.
func (c *Client) learnSizeLimit(n int) bool {
	return c.brokerMaxBody.Swap(int64(n)) != int64(n)
}

// ownsQueue reports whether the Client declares queue itself.
func (c *Client) ownsQueue(queue string) bool {
	return queue == c.cfg.StatusQueue || queue == c.cfg.ExecuteQueue ||
		(queue == c.cfg.DeadLetterQueue && queue != "") ||
		(queue == c.cfg.LedgerQueue && queue != "") ||
		(queue == c.cfg.CancelQueue && queue != "")
}

// redeclare declares one of the Client's queues again on s's connection.
func (c *Client) redeclare(s *publishSession, queue string) error {
	args := queueArgs(c.cfg.QueueType, "")
	switch queue {
	case c.cfg.ExecuteQueue:
		args = queueArgs(c.cfg.QueueType, c.cfg.DeadLetterQueue)
	case c.cfg.LedgerQueue:
		args = ledgerArgs(c.cfg.QueueType)
	}
	return s.conn.bounded(c.cfg.RPCTimeout, "declare queue "+queue, func() error {
		return declareQueue(s.conn.Connection, queue, args, c.pub.log)
	})
}
