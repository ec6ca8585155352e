package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// failoverRetry is how long the control plane waits between two passes
// over the nodes when none answered.
const failoverRetry = 200 * time.Millisecond

// Failover is one connection loss of a control plane that follows a
// cluster, and the node it moved to.
type Failover struct {
	Lost time.Time // when the connection was seen closed
	Back time.Time // when a connection to Node was up again
	Node string    // the node's URL
}

// failover is the state of a control plane made by
// NewClusterControlPlane: the nodes it may use and the goroutine that
// moves it to the next one when its connection is lost.
type failover struct {
	urls []string
	cur  int           // index of the current node; guarded by ControlPlane.connMu
	stop chan struct{} // closed by Close
	done chan struct{} // closed when follow returns

	mu    sync.Mutex // guards moves
	moves []Failover
}

// NewClusterControlPlane is a control plane on a RabbitMQ cluster, as an
// outside system would run one: it connects to the first of urls that
// answers and, whenever its connection is lost (its node died), connects
// to the next node in turn, keeping its record of statuses. A status that
// was unacked when the connection died is delivered again and counts as a
// duplicate. PublishAll publishes through such a loss. Do not combine it
// with Reconnect.
func NewClusterControlPlane(urls []string, executeQueue, statusQueue string) (*ControlPlane, error) {
	if len(urls) == 0 {
		return nil, errors.New("control plane: no broker URL")
	}
	cp := newControlPlane(executeQueue, statusQueue)
	cp.fo = &failover{
		urls: urls,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	cp.connMu.Lock()
	var errs []error
	for i, u := range urls {
		err := cp.connect(u)
		if err == nil {
			cp.fo.cur = i
			break
		}
		errs = append(errs, err)
	}
	connected := cp.conn != nil
	cp.connMu.Unlock()
	if !connected {
		return nil, errors.Join(errs...)
	}
	go cp.follow()
	return cp, nil
}

// follow waits for the connection to close and moves to the next node
// that answers, until Close. It is the one goroutine of the failover,
// started by NewClusterControlPlane and waited for by stopFollowing.
func (cp *ControlPlane) follow() {
	fo := cp.fo
	defer close(fo.done)
	for {
		cp.connMu.Lock()
		lost := cp.conn.NotifyClose(make(chan *amqp.Error, 1))
		cp.connMu.Unlock()
		select {
		case <-fo.stop:
			return
		case <-lost:
		}
		move := Failover{Lost: time.Now()}
		for {
			if node, ok := cp.connectNext(); ok {
				move.Back, move.Node = time.Now(), node
				break
			}
			select {
			case <-fo.stop:
				return
			case <-time.After(failoverRetry):
			}
		}
		fo.mu.Lock()
		fo.moves = append(fo.moves, move)
		fo.mu.Unlock()
	}
}

// connectNext drops the dead connection and tries each node once, the one
// after the current first, so the node just lost comes last. It reports
// the node reached.
func (cp *ControlPlane) connectNext() (string, bool) {
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	_ = cp.conn.Close() // already closed: its node is gone
	cp.waitConsumer()
	fo := cp.fo
	for range fo.urls {
		fo.cur = (fo.cur + 1) % len(fo.urls)
		if cp.connect(fo.urls[fo.cur]) == nil {
			return fo.urls[fo.cur], true
		}
	}
	return "", false
}

// stopFollowing ends the failover goroutine, if any, and waits for it.
func (cp *ControlPlane) stopFollowing() {
	if cp.fo == nil {
		return
	}
	select {
	case <-cp.fo.stop:
	default:
		close(cp.fo.stop)
	}
	<-cp.fo.done
}

// Failovers returns the connection losses the control plane went through
// so far (NewClusterControlPlane only).
func (cp *ControlPlane) Failovers() []Failover {
	if cp.fo == nil {
		return nil
	}
	cp.fo.mu.Lock()
	defer cp.fo.mu.Unlock()
	return append([]Failover(nil), cp.fo.moves...)
}

// PublishAll publishes reqs to the execute queue with up to window
// unconfirmed at once, and returns once the broker has confirmed every
// one. A message whose confirm does not come (its channel died with its
// node, or the broker nacked it) is published again, after the failover
// has made a new channel when the old one is closed: a job may so be
// published twice (at-least-once), never not at all. It returns how many
// publishes were repeated.
func (cp *ControlPlane) PublishAll(ctx context.Context, reqs []*blacktreev1.JobRequest, window int) (repeated int, err error) {
	type outgoing struct {
		id   string
		body []byte
	}
	pending := make([]outgoing, 0, len(reqs))
	for _, r := range reqs {
		body, err := jobspec.EncodeRequest(r)
		if err != nil {
			return 0, err
		}
		pending = append(pending, outgoing{id: r.GetJobId(), body: body})
	}
	for len(pending) > 0 {
		batch := pending[:min(window, len(pending))]
		cp.connMu.Lock()
		ch := cp.pub
		confirms := make([]*amqp.DeferredConfirmation, 0, len(batch))
		for _, m := range batch {
			c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", cp.ExecuteQueue, true, false, jobPublishing(m.body, m.id))
			if err != nil {
				break // the channel is closed; the rest go again on the next one
			}
			confirms = append(confirms, c)
		}
		cp.connMu.Unlock()
		var again []outgoing
		for i, c := range confirms {
			ok, err := c.WaitContext(ctx)
			if err != nil {
				return repeated, fmt.Errorf("publish %s: %w", batch[i].id, err)
			}
			if !ok {
				again = append(again, batch[i])
			}
		}
		again = append(again, batch[len(confirms):]...)
		pending = append(again, pending[len(batch):]...)
		if len(again) == 0 {
			continue
		}
		repeated += len(again)
		if !ch.IsClosed() {
			// Nacked: the queue had no leader when this channel first
			// published to it. RabbitMQ 3.10 then nacks that channel's
			// publishes for seconds after a leader is elected; a new
			// channel publishes at once.
			select {
			case <-time.After(failoverRetry):
			case <-ctx.Done():
				return repeated, ctx.Err()
			}
			cp.renewPublishChannel(ch)
			continue
		}
		err := Poll(ctx, 20*time.Millisecond, func() bool {
			cp.connMu.Lock()
			defer cp.connMu.Unlock()
			return cp.pub != ch && !cp.pub.IsClosed()
		})
		if err != nil {
			return repeated, fmt.Errorf("publish: no new channel after a node's loss: %w", err)
		}
	}
	return repeated, nil
}

// renewPublishChannel replaces the publish channel ch, if it is still the
// current one, with a new confirm-mode channel on the same connection. On
// failure it leaves ch: the failover replaces it with the connection.
func (cp *ControlPlane) renewPublishChannel(ch *amqp.Channel) {
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	if cp.pub != ch {
		return
	}
	fresh, err := cp.conn.Channel()
	if err != nil {
		return
	}
	if err := fresh.Confirm(false); err != nil {
		_ = fresh.Close()
		return
	}
	_ = ch.Close()
	cp.pub = fresh
}

// RepeatedStatuses counts the status messages whose exact bytes had
// arrived before: the same message delivered again (unacked when the
// control plane's connection died) or published again by a hub whose
// confirm was lost. A job run twice sends a different message.
func (cp *ControlPlane) RepeatedStatuses() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	seen := make(map[string]bool, len(cp.bodies))
	n := 0
	for _, b := range cp.bodies {
		if seen[string(b)] {
			n++
		}
		seen[string(b)] = true
	}
	return n
}
