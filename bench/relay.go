package bench

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// Relay is the baseline: the least work that moves a JobRequest from the
// execute queue to a JobResponse on the status queue with the hub's
// delivery guarantees — consume with a prefetch window, decode the
// request, publish a response with publisher confirms (persistent), and
// ack the request only after the confirm. Consumer and publisher use
// separate connections, as the hub's do (docs/protocol.md). Nothing else: no gRPC, no worker, no
// bookkeeping. It is the floor a broker-bound dispatcher cannot beat.
type Relay struct {
	consume, publish *amqp.Connection
	cancel           context.CancelFunc
	done             chan error
}

type relayed struct {
	d  amqp.Delivery
	dc *amqp.DeferredConfirmation
}

// StartRelay starts relaying from q.Execute to q.Status.
func StartRelay(url string, q Queues, prefetch int) (*Relay, error) {
	cconn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "btbench-relay-consume"}})
	if err != nil {
		return nil, fmt.Errorf("relay: dial: %w", err)
	}
	pconn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "btbench-relay-publish"}})
	if err != nil {
		cconn.Close()
		return nil, fmt.Errorf("relay: dial: %w", err)
	}
	fail := func(err error) (*Relay, error) {
		cconn.Close()
		pconn.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	cch, err := cconn.Channel()
	if err != nil {
		return fail(err)
	}
	if err := cch.Qos(prefetch, 0, false); err != nil {
		return fail(err)
	}
	pch, err := pconn.Channel()
	if err != nil {
		return fail(err)
	}
	if err := pch.Confirm(false); err != nil {
		return fail(err)
	}
	deliveries, err := cch.Consume(q.Execute, "btbench-relay", false, false, false, false, nil)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{consume: cconn, publish: pconn, cancel: cancel, done: make(chan error, 1)}
	inflight := make(chan relayed, prefetch)
	acked := make(chan error, 1)
	// Acker: owns acks on the consume channel; waits for confirms in order.
	go func() {
		var first error
		for x := range inflight {
			ok, err := x.dc.WaitContext(context.Background())
			switch {
			case err != nil:
				first = firstErr(first, err)
				_ = x.d.Nack(false, true)
			case !ok:
				first = firstErr(first, errors.New("status publish nacked"))
				_ = x.d.Nack(false, true)
			default:
				if err := x.d.Ack(false); err != nil {
					first = firstErr(first, err)
				}
			}
		}
		acked <- first
	}()
	// Relay loop: owns the publish channel.
	go func() {
		var first error
		defer func() {
			close(inflight)
			r.done <- firstErr(first, <-acked)
		}()
		for {
			d, req, ok := nextRequest(ctx, deliveries)
			if !ok {
				return
			}
			body, err := jobspec.EncodeResponse(&blacktreev1.JobResponse{JobId: req.GetJobId(), Success: true,
				ImageUrl: req.GetImageName(), WorkerId: "relay"})
			if err != nil {
				first = firstErr(first, err)
				return
			}
			dc, err := pch.PublishWithDeferredConfirmWithContext(ctx, "", q.Status, false, false, amqp.Publishing{
				ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: req.GetJobId(),
				CorrelationId: d.CorrelationId, Body: body,
			})
			if err != nil {
				first = firstErr(first, err)
				return
			}
			inflight <- relayed{d: d, dc: dc}
		}
	}()
	return r, nil
}

// nextRequest returns the next delivery that holds a JobRequest, rejecting
// (without requeue) those that do not; false once ctx ends or deliveries
// is closed.
func nextRequest(ctx context.Context, deliveries <-chan amqp.Delivery) (amqp.Delivery, *blacktreev1.JobRequest, bool) {
	for {
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-deliveries:
		case <-ctx.Done():
			return d, nil, false
		}
		if !ok {
			return d, nil, false
		}
		req, _, err := jobspec.DecodeRequest(d.Body)
		if err != nil {
			_ = d.Reject(false)
			continue
		}
		return d, req, true
	}
}

// firstErr keeps the first error of a sequence.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Stop stops the relay and closes its connections; unacked deliveries
// return to the queue.
func (r *Relay) Stop() error {
	r.cancel()
	err := <-r.done
	_ = r.consume.Close()
	_ = r.publish.Close()
	return err
}
