package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// Queues names one run's queues.
type Queues struct {
	Execute, Status, Dead string
}

// NewQueues returns fresh queue names with the given prefix.
func NewQueues(prefix string) Queues {
	id := randomHex(5)
	q := Queues{Execute: prefix + ".execute." + id, Status: prefix + ".status." + id}
	q.Dead = q.Execute + ".dead"
	return q
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Declare declares the queues exactly as the hub's adapter does for a
// classic topology (durable; the execute queue dead-letters to Dead), so
// the baseline and the hub work on identical queues and the hub's own
// declare is a no-op.
func (q Queues) Declare(url string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(q.Dead, true, false, false, false, amqp.Table{}); err != nil {
		return fmt.Errorf("declare %s: %w", q.Dead, err)
	}
	args := amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q.Dead}
	if _, err := ch.QueueDeclare(q.Execute, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare %s: %w", q.Execute, err)
	}
	if _, err := ch.QueueDeclare(q.Status, true, false, false, false, amqp.Table{}); err != nil {
		return fmt.Errorf("declare %s: %w", q.Status, err)
	}
	return nil
}

// Delete deletes the queues (best effort).
func (q Queues) Delete(url string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	var errs []error
	// The hub also declares its orphan ledger queue next to the execute
	// queue (docs/design/orphan-ledger.md).
	for _, name := range []string{q.Execute, q.Status, q.Dead, q.Execute + ".ledger"} {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if _, err := ch.QueueDelete(name, false, false, false); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
		}
		_ = ch.Close()
	}
	return errors.Join(errs...)
}

// Job returns a valid JobRequest (the noop executor accepts it).
func Job(id string) *blacktreev1.JobRequest {
	return &blacktreev1.JobRequest{JobId: id, RepoUrl: "user/reponame", Branch: "main",
		DockerfilePath: "Dockerfile", ContextDir: ".", ImageName: "myapp:latest", GithubToken: "ghp_bench_token"}
}

// Publisher publishes JobRequests to the execute queue with publisher
// confirms, keeping up to Window publishes unconfirmed (pipelined), the
// way a busy control plane does. One goroutine calls Publish; a second one
// (owned by the Publisher) waits for confirms in order.
type Publisher struct {
	conn    *amqp.Connection
	ch      *amqp.Channel // owned by the caller of Publish
	queue   string
	ledger  *Ledger
	pending chan *amqp.DeferredConfirmation
	done    chan struct{}

	mu  sync.Mutex // guards err
	err error
}

// NewPublisher connects to url and puts a channel in confirm mode.
func NewPublisher(url, queue string, ledger *Ledger, window int) (*Publisher, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "btbench-publisher"}})
	if err != nil {
		return nil, fmt.Errorf("publisher: dial: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	p := &Publisher{conn: conn, ch: ch, queue: queue, ledger: ledger,
		pending: make(chan *amqp.DeferredConfirmation, window), done: make(chan struct{})}
	go p.confirms()
	return p, nil
}

func (p *Publisher) confirms() {
	defer close(p.done)
	for dc := range p.pending {
		ok, err := dc.WaitContext(context.Background())
		if err == nil && !ok {
			err = errors.New("broker nacked a publish")
		}
		if err != nil {
			p.mu.Lock()
			if p.err == nil {
				p.err = err
			}
			p.mu.Unlock()
		}
	}
}

// Publish publishes the job with id, recording it in the ledger first. It
// blocks only when Window publishes are unconfirmed.
func (p *Publisher) Publish(ctx context.Context, id string) error {
	body, err := jobspec.EncodeRequest(Job(id))
	if err != nil {
		return err
	}
	p.ledger.Published(id, time.Now())
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", p.queue, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Body: body,
	})
	if err != nil {
		return fmt.Errorf("publish %s: %w", id, err)
	}
	select {
	case p.pending <- dc:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// Close waits for outstanding confirms and closes the connection. It
// returns the first confirm failure.
func (p *Publisher) Close() error {
	close(p.pending)
	<-p.done
	_ = p.conn.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// PublishBacklog publishes n jobs named prefix-000000.. as fast as the
// confirm window allows.
func (p *Publisher) PublishBacklog(ctx context.Context, prefix string, n int) ([]string, error) {
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%06d", prefix, i)
		if err := p.Publish(ctx, ids[i]); err != nil {
			return ids[:i], err
		}
	}
	return ids, nil
}

// PublishRate publishes jobs at a fixed offered rate (open loop: publish i
// is scheduled at start + i/rate whatever happened before) for d. It
// returns the ids and the largest lag behind schedule, which should stay
// far below the latencies measured.
func (p *Publisher) PublishRate(ctx context.Context, prefix string, rate float64, d time.Duration) ([]string, time.Duration, error) {
	n := int(rate * d.Seconds())
	ids := make([]string, 0, n)
	start := time.Now()
	var maxLag time.Duration
	for i := range n {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if wait := time.Until(at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ids, maxLag, ctx.Err()
			}
		} else if -wait > maxLag {
			maxLag = -wait
		}
		id := fmt.Sprintf("%s-%06d", prefix, i)
		if err := p.Publish(ctx, id); err != nil {
			return ids, maxLag, err
		}
		ids = append(ids, id)
	}
	return ids, maxLag, nil
}

// Collector consumes the status queue (no-ack, on a connection of its
// own) and records every status in the ledger with its arrival time.
type Collector struct {
	conn *amqp.Connection
	done chan struct{}
}

// NewCollector starts consuming queue.
func NewCollector(url, queue string, ledger *Ledger) (*Collector, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "btbench-collector"}})
	if err != nil {
		return nil, fmt.Errorf("collector: dial: %w", err)
	}
	ch, err := conn.Channel()
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.Consume(queue, "", true, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("collector: %w", err)
	}
	c := &Collector{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for d := range deliveries {
			now := time.Now()
			resp, err := jobspec.DecodeResponse(d.Body)
			if err != nil {
				ledger.Undecodable()
				continue
			}
			var started, finished time.Time
			if resp.GetStartedAt() != nil && resp.GetFinishedAt() != nil {
				started, finished = resp.GetStartedAt().AsTime(), resp.GetFinishedAt().AsTime()
			}
			ledger.ReceivedWorked(resp.GetJobId(), resp.GetSuccess(), resp.GetError(), now, started, finished)
		}
	}()
	return c, nil
}

// Close stops consuming.
func (c *Collector) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
