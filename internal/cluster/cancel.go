package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// PublishCancel publishes a cancel for jobID to queue, the hubs' cancel
// queue (docs/protocol.md#cancelling-a-job), and waits for its confirm.
func (cp *ControlPlane) PublishCancel(ctx context.Context, queue, jobID, reason string) error {
	body, err := json.Marshal(struct {
		JobID  string `json:"jobId"`
		Reason string `json:"reason,omitempty"`
	}{jobID, reason})
	if err != nil {
		return err
	}
	cp.connMu.Lock()
	defer cp.connMu.Unlock()
	conf, err := cp.pub.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Body:         body,
	})
	if err != nil {
		return fmt.Errorf("publish cancel of %s: %w", jobID, err)
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("publish cancel of %s: %w", jobID, err)
	}
	if !ok {
		return fmt.Errorf("publish cancel of %s: broker nacked", jobID)
	}
	return nil
}
