package cluster

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// ControlPlane publishes JobRequests and records every JobResponse that
// appears on the status queue. It does not declare the queues: start a hub
// first (the hub declares them with the arguments it wants). After a broker
// restart, Reconnect resumes it with its record intact.
type ControlPlane struct {
	ExecuteQueue, StatusQueue string

	connMu sync.Mutex       // guards conn, pub, sub and done; serialises publishing on pub
	conn   *amqp.Connection // the current connection (Reconnect replaces it)
	pub    *amqp.Channel    // confirm mode
	sub    *amqp.Channel    // owned by the consume goroutine after start
	done   chan struct{}    // closed when the current consume goroutine ends
	fo     *failover        // nil unless made by NewClusterControlPlane (failover.go)

	mu       sync.Mutex // guards the following
	statuses map[string][]*blacktreev1.JobResponse
	firstAt  map[string]time.Time // when each id's first status arrived
	bodies   [][]byte
	bad      int
	changed  chan struct{} // closed and replaced on every new status
}

// NewControlPlane connects to url and starts consuming statusQueue, which
// must exist.
func NewControlPlane(url, executeQueue, statusQueue string) (*ControlPlane, error) {
	cp := newControlPlane(executeQueue, statusQueue)
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	if err := cp.connect(url); err != nil {
		return nil, err
	}
	return cp, nil
}

// newControlPlane is a control plane with an empty record and no
// connection yet.
func newControlPlane(executeQueue, statusQueue string) *ControlPlane {
	return &ControlPlane{
		ExecuteQueue: executeQueue,
		StatusQueue:  statusQueue,
		statuses:     map[string][]*blacktreev1.JobResponse{},
		firstAt:      map[string]time.Time{},
		changed:      make(chan struct{}),
	}
}

// connect dials url, opens the publishing and consuming channels and starts
// the consume goroutine. The caller holds connMu.
func (cp *ControlPlane) connect(url string) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "blacktree-test-control-plane"}})
	if err != nil {
		return fmt.Errorf("control plane: dial: %w", err)
	}
	var pub, sub *amqp.Channel
	if pub, err = conn.Channel(); err == nil {
		err = pub.Confirm(false)
	}
	if err == nil {
		sub, err = conn.Channel()
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = sub.Consume(cp.StatusQueue, "", false, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("control plane: %w", err)
	}
	cp.conn, cp.pub, cp.sub, cp.done = conn, pub, sub, make(chan struct{})
	go cp.consume(deliveries, cp.done)
	return nil
}

// Reconnect closes the current connection (dead after a broker crash) and
// connects to url again, as a control plane does when its broker comes
// back. The statuses recorded so far are kept; a status that was unacked
// at the crash is delivered again and counts as a duplicate.
func (cp *ControlPlane) Reconnect(url string) error {
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	_ = cp.conn.Close() // already closed when the broker died
	cp.waitConsumer()
	return cp.connect(url)
}

// waitConsumer waits a bounded time for the current consume goroutine to
// end after its connection closed. The caller holds connMu.
func (cp *ControlPlane) waitConsumer() {
	select {
	case <-cp.done:
	case <-time.After(5 * time.Second):
	}
}

func (cp *ControlPlane) consume(deliveries <-chan amqp.Delivery, done chan<- struct{}) {
	defer close(done)
	for d := range deliveries {
		resp, err := jobspec.DecodeResponse(d.Body)
		cp.mu.Lock()
		cp.bodies = append(cp.bodies, d.Body)
		if err != nil {
			cp.bad++
		} else {
			id := resp.GetJobId()
			if len(cp.statuses[id]) == 0 {
				cp.firstAt[id] = time.Now()
			}
			cp.statuses[id] = append(cp.statuses[id], resp)
		}
		close(cp.changed)
		cp.changed = make(chan struct{})
		cp.mu.Unlock()
		_ = d.Ack(false) // a lost ack only causes a redelivery, which the ledger counts
	}
}

// Publish publishes req to the execute queue and waits for the broker's
// confirm.
func (cp *ControlPlane) Publish(ctx context.Context, req *blacktreev1.JobRequest) error {
	body, err := jobspec.EncodeRequest(req)
	if err != nil {
		return err
	}
	return cp.PublishRaw(ctx, body, req.GetJobId())
}

// PublishRaw publishes body as is (for malformed-input tests).
func (cp *ControlPlane) PublishRaw(ctx context.Context, body []byte, messageID string) error {
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	conf, err := cp.pub.PublishWithDeferredConfirmWithContext(ctx, "", cp.ExecuteQueue, true, false, jobPublishing(body, messageID))
	if err != nil {
		return fmt.Errorf("publish %s: %w", messageID, err)
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("publish %s: %w", messageID, err)
	}
	if !ok {
		return fmt.Errorf("publish %s: broker nacked", messageID)
	}
	return nil
}

// jobPublishing is the message a control plane publishes for a job: a
// persistent JSON body with the job id as its message id.
func jobPublishing(body []byte, messageID string) amqp.Publishing {
	return amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		MessageId:     messageID,
		CorrelationId: "corr-" + messageID,
		Body:          body,
	}
}

// WaitFor waits until every id has at least one status, or ctx ends. It
// returns the first status of each id it has.
func (cp *ControlPlane) WaitFor(ctx context.Context, ids ...string) (map[string]*blacktreev1.JobResponse, error) {
	for {
		cp.mu.Lock()
		got := map[string]*blacktreev1.JobResponse{}
		var missing []string
		for _, id := range ids {
			if s := cp.statuses[id]; len(s) > 0 {
				got[id] = s[0]
			} else {
				missing = append(missing, id)
			}
		}
		changed := cp.changed
		cp.mu.Unlock()
		if len(missing) == 0 {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if len(missing) > 5 {
				missing = append(missing[:5], fmt.Sprintf("... (%d more)", len(missing)-5))
			}
			return got, fmt.Errorf("no status for %v: %w", missing, ctx.Err())
		}
	}
}

// Statuses returns every status recorded for id.
func (cp *ControlPlane) Statuses(id string) []*blacktreev1.JobResponse {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*blacktreev1.JobResponse(nil), cp.statuses[id]...)
}

// FirstStatusAt returns when the first status for id arrived, and whether
// one did.
func (cp *ControlPlane) FirstStatusAt(id string) (time.Time, bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	at, ok := cp.firstAt[id]
	return at, ok
}

// Bodies returns every raw status message body received.
func (cp *ControlPlane) Bodies() [][]byte {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([][]byte(nil), cp.bodies...)
}

// Ledger is the account of a run: which published ids got statuses.
type Ledger struct {
	Published, Answered, Lost, Duplicates, Unexpected, Undecodable int
	LostIDs, DuplicateIDs                                          []string
}

func (l Ledger) String() string {
	return fmt.Sprintf("published=%d answered=%d lost=%d duplicates=%d unexpected=%d undecodable=%d",
		l.Published, l.Answered, l.Lost, l.Duplicates, l.Unexpected, l.Undecodable)
}

// Ledger accounts for the published ids.
func (cp *ControlPlane) Ledger(published []string) Ledger {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	l := Ledger{Published: len(published), Undecodable: cp.bad}
	want := map[string]bool{}
	for _, id := range published {
		want[id] = true
		switch n := len(cp.statuses[id]); {
		case n == 0:
			l.Lost++
			l.LostIDs = append(l.LostIDs, id)
		default:
			l.Answered++
			if n > 1 {
				l.Duplicates += n - 1
				l.DuplicateIDs = append(l.DuplicateIDs, id)
			}
		}
	}
	for id, s := range cp.statuses {
		if !want[id] {
			l.Unexpected += len(s)
		}
	}
	sort.Strings(l.LostIDs)
	sort.Strings(l.DuplicateIDs)
	return l
}

// QueueDepth returns the ready-message count of a queue (passive declare).
func (cp *ControlPlane) QueueDepth(name string) (int, error) {
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	ch, err := cp.conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", name, err)
	}
	return q.Messages, nil
}

// DeleteQueues deletes the named queues (test cleanup).
func (cp *ControlPlane) DeleteQueues(names ...string) error {
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	ch, err := cp.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, n := range names {
		if _, err := ch.QueueDelete(n, false, false, false); err != nil {
			return fmt.Errorf("delete %s: %w", n, err)
		}
	}
	return nil
}

// Close stops consuming and closes the connection.
func (cp *ControlPlane) Close() error {
	cp.stopFollowing()
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	err := cp.conn.Close()
	cp.waitConsumer()
	return err
}
