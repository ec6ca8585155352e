package rabbit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/syncbuf"
)

// TestDeclareQueues checks the helper declares all three queues.
func TestDeclareQueues(t *testing.T) {
	e := newEnv(t, nil)
	c, err := New(e.cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.DeclareQueues(ctx); err != nil {
		t.Fatalf("DeclareQueues() = %v", err)
	}
	for _, q := range []string{e.cfg.ExecuteQueue, e.cfg.ExecuteQueue + DeadLetterSuffix, e.cfg.StatusQueue} {
		if n := e.admin.count(q); n != 0 {
			t.Fatalf("queue %s holds %d messages, want 0", q, n)
		}
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}

func TestExistingQueueWithOtherArgs(t *testing.T) {
	e := newEnv(t, nil)
	// Someone declared the execute queue differently (no DLX, a length limit).
	if _, err := e.admin.ch.QueueDeclare(e.cfg.ExecuteQueue, true, false, false, false, amqp.Table{"x-max-length": int32(100)}); err != nil {
		t.Fatalf("QueueDeclare() = %v", err)
	}
	var logs *syncbuf.Buffer
	e.logger, logs = capturingLogger(t)
	c := e.start(t)
	if !strings.Contains(logs.String(), "queue exists with different arguments; using it as it is") {
		t.Fatalf("no warning about the existing queue's arguments in the log:\n%s", logs)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte("{}"), MessageID: "x"}); err != nil {
		t.Fatalf("PublishTo() = %v", err)
	}
	if d := receive(t, c, 5*time.Second); d.MessageID != "x" {
		t.Fatalf("delivery id = %q, want x", d.MessageID)
	} else if err := d.Ack(); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
}

func TestPublishRedeclaresDeletedQueue(t *testing.T) {
	e := newEnv(t, nil)
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := e.admin.ch.QueueDelete(e.cfg.StatusQueue, false, false, false); err != nil {
		t.Fatalf("QueueDelete() = %v", err)
	}
	if err := c.Publish(ctx, broker.Message{Body: []byte("{}"), MessageID: "after-delete"}); err != nil {
		t.Fatalf("Publish() to a deleted status queue = %v, want nil after re-declare", err)
	}
	if d := e.admin.get(e.cfg.StatusQueue); d.MessageId != "after-delete" {
		t.Fatalf("status message id = %q, want after-delete", d.MessageId)
	}
	err := c.PublishTo(ctx, "bt-test-no-such-queue-"+randHex(t), broker.Message{Body: []byte("{}"), MessageID: "x"})
	if !errors.Is(err, ErrUnroutable) {
		t.Fatalf("PublishTo(missing queue) = %v, want ErrUnroutable", err)
	}
}

// TestExecuteQueueDeleted checks that a consumer cancelled by the broker
// (its queue deleted) reconnects and consumes the re-declared queue.
func TestExecuteQueueDeleted(t *testing.T) {
	e := newEnv(t, nil)
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := e.admin.ch.QueueDelete(e.cfg.ExecuteQueue, false, false, false); err != nil {
		t.Fatalf("QueueDelete() = %v", err)
	}
	if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte("{}"), MessageID: "after-delete"}); err != nil {
		t.Fatalf("PublishTo() = %v", err)
	}
	d := receive(t, c, 10*time.Second)
	if d.MessageID != "after-delete" {
		t.Fatalf("delivery id = %q, want after-delete", d.MessageID)
	}
	if err := d.Ack(); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	waitFor(t, "client ready", 10*time.Second, c.Ready)
}
