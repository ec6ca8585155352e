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
// first (the hub declares them with the arguments it wants).
type ControlPlane struct {
	ExecuteQueue, StatusQueue string

	conn *amqp.Connection
	pub  *amqp.Channel // confirm mode; guarded by pubMu
	sub  *amqp.Channel // owned by the consume goroutine after start
	done chan struct{}

	pubMu sync.Mutex // serialises publishing on pub

	mu       sync.Mutex // guards the following
	statuses map[string][]*blacktreev1.JobResponse
	bodies   [][]byte
	bad      int
	changed  chan struct{} // closed and replaced on every new status
}

// NewControlPlane connects to url and starts consuming statusQueue, which
// must exist.
func NewControlPlane(url, executeQueue, statusQueue string) (*ControlPlane, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "blacktree-test-control-plane"}})
	if err != nil {
		return nil, fmt.Errorf("control plane: dial: %w", err)
	}
	cp := &ControlPlane{
		ExecuteQueue: executeQueue,
		StatusQueue:  statusQueue,
		conn:         conn,
		done:         make(chan struct{}),
		statuses:     map[string][]*blacktreev1.JobResponse{},
		changed:      make(chan struct{}),
	}
	if cp.pub, err = conn.Channel(); err == nil {
		err = cp.pub.Confirm(false)
	}
	if err == nil {
		cp.sub, err = conn.Channel()
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = cp.sub.Consume(statusQueue, "", false, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("control plane: %w", err)
	}
	go cp.consume(deliveries)
	return cp, nil
}

func (cp *ControlPlane) consume(deliveries <-chan amqp.Delivery) {
	defer close(cp.done)
	for d := range deliveries {
		resp, err := jobspec.DecodeResponse(d.Body)
		cp.mu.Lock()
		cp.bodies = append(cp.bodies, d.Body)
		if err != nil {
			cp.bad++
		} else {
			cp.statuses[resp.GetJobId()] = append(cp.statuses[resp.GetJobId()], resp)
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
	cp.pubMu.Lock()
	defer cp.pubMu.Unlock()
	conf, err := cp.pub.PublishWithDeferredConfirmWithContext(ctx, "", cp.ExecuteQueue, true, false, amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		MessageId:     messageID,
		CorrelationId: "corr-" + messageID,
		Body:          body,
	})
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
	err := cp.conn.Close()
	select {
	case <-cp.done:
	case <-time.After(5 * time.Second):
	}
	return err
}
