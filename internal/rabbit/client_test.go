package rabbit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/broker"
)

func TestPublishConfirmed(t *testing.T) {
	e := newEnv(t, nil)
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	body := []byte(`{"jobId":"job-1","success":true,"logs":"","imageUrl":"","error":""}`)
	if err := c.Publish(ctx, broker.Message{Body: body, MessageID: "job-1", CorrelationID: "corr-1"}); err != nil {
		t.Fatalf("Publish() = %v, want nil", err)
	}
	if n := e.admin.count(e.cfg.StatusQueue); n != 1 {
		t.Fatalf("status queue holds %d messages after a confirmed Publish, want 1", n)
	}
	d := e.admin.get(e.cfg.StatusQueue)
	if string(d.Body) != string(body) || d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" ||
		d.MessageId != "job-1" || d.CorrelationId != "corr-1" {
		t.Fatalf("status message = body %q mode %d type %q id %q corr %q, want body, persistent, application/json, job-1, corr-1",
			d.Body, d.DeliveryMode, d.ContentType, d.MessageId, d.CorrelationId)
	}
}

func TestConsumeAckNack(t *testing.T) {
	for _, qt := range []string{QueueTypeClassic, QueueTypeQuorum} {
		t.Run(qt, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.QueueType = qt })
			c := e.start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for _, id := range []string{"ack", "requeue", "dead"} {
				if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{
					Body:          []byte(`{"jobId":"` + id + `"}`),
					MessageID:     id,
					CorrelationID: "c-" + id,
				}); err != nil {
					t.Fatalf("PublishTo(%s) = %v", id, err)
				}
			}
			got := map[string]broker.Delivery{}
			for range 3 {
				d := receive(t, c, 5*time.Second)
				got[d.MessageID] = d
			}
			if d := got["ack"]; d.CorrelationID != "c-ack" || d.ContentType != "application/json" || d.Redelivered {
				t.Fatalf("delivery = %+v, want correlation c-ack, application/json, not redelivered", d)
			}
			if err := got["ack"].Ack(); err != nil {
				t.Fatalf("Ack() = %v, want nil", err)
			}
			if err := got["ack"].Ack(); !errors.Is(err, ErrAlreadySettled) {
				t.Fatalf("second Ack() = %v, want ErrAlreadySettled", err)
			}
			if err := got["requeue"].Nack(true); err != nil {
				t.Fatalf("Nack(true) = %v, want nil", err)
			}
			again := receive(t, c, 5*time.Second)
			if again.MessageID != "requeue" || !again.Redelivered {
				t.Fatalf("after Nack(true) got %q redelivered=%v, want requeue redelivered=true", again.MessageID, again.Redelivered)
			}
			if err := again.Ack(); err != nil {
				t.Fatalf("Ack() = %v", err)
			}
			if err := got["dead"].Nack(false); err != nil {
				t.Fatalf("Nack(false) = %v, want nil", err)
			}
			waitFor(t, "message in the dead-letter queue", 5*time.Second, func() bool { return e.admin.count(e.cfg.DeadLetterQueue) == 1 })
			if d := e.admin.get(e.cfg.DeadLetterQueue); d.MessageId != "dead" {
				t.Fatalf("dead-lettered message id = %q, want dead", d.MessageId)
			}
			if n := e.admin.count(e.cfg.ExecuteQueue); n != 0 {
				t.Fatalf("execute queue holds %d messages, want 0", n)
			}
		})
	}
}

func TestPrefetchWindow(t *testing.T) {
	for _, qt := range []string{QueueTypeClassic, QueueTypeQuorum} {
		t.Run(qt, func(t *testing.T) {
			const prefetch, total = 3, 10
			e := newEnv(t, func(c *Config) { c.QueueType = qt; c.Prefetch = prefetch })
			c := e.start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for i := range total {
				if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte("{}"), MessageID: fmt.Sprint(i)}); err != nil {
					t.Fatalf("PublishTo() = %v", err)
				}
			}
			var held []broker.Delivery
			for range prefetch {
				held = append(held, receive(t, c, 5*time.Second))
			}
			expectNone(t, c, 500*time.Millisecond)
			if n := e.admin.count(e.cfg.ExecuteQueue); n != total-prefetch {
				t.Fatalf("ready messages = %d with %d unacked, want %d", n, prefetch, total-prefetch)
			}
			if err := held[0].Ack(); err != nil {
				t.Fatalf("Ack() = %v", err)
			}
			held = append(held[1:], receive(t, c, 5*time.Second))
			expectNone(t, c, 300*time.Millisecond)
			for _, d := range held {
				if err := d.Ack(); err != nil {
					t.Fatalf("Ack() = %v", err)
				}
			}
		})
	}
}

func TestStopConsuming(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Prefetch = 5 })
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte("{}"), MessageID: fmt.Sprint(i)}); err != nil {
			t.Fatalf("PublishTo() = %v", err)
		}
	}
	held := receive(t, c, 5*time.Second)
	// The other two are prefetched but not handed out: StopConsuming
	// requeues them.
	waitFor(t, "prefetch of all three", 5*time.Second, func() bool { return e.admin.count(e.cfg.ExecuteQueue) == 0 })
	if err := c.StopConsuming(ctx); err != nil {
		t.Fatalf("StopConsuming() = %v", err)
	}
	if !c.Ready() {
		t.Fatalf("Ready() = false after StopConsuming, want true")
	}
	if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte("{}"), MessageID: "late"}); err != nil {
		t.Fatalf("PublishTo() = %v", err)
	}
	expectNone(t, c, 300*time.Millisecond)
	if err := held.Ack(); err != nil {
		t.Fatalf("Ack() of a held delivery after StopConsuming = %v, want nil", err)
	}
	waitFor(t, "requeued deliveries", 5*time.Second, func() bool { return e.admin.count(e.cfg.ExecuteQueue) == 3 })
	if err := c.StopConsuming(ctx); err != nil {
		t.Fatalf("second StopConsuming() = %v", err)
	}
}

func TestConcurrentPublish(t *testing.T) {
	e := newEnv(t, nil)
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const workers, each = 16, 50
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("job-%d-%d", w, i)
				errs <- c.Publish(ctx, broker.Message{Body: []byte(`{"jobId":"` + id + `"}`), MessageID: id})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Publish() = %v, want nil", err)
		}
	}
	if n := e.admin.count(e.cfg.StatusQueue); n != workers*each {
		t.Fatalf("status queue holds %d messages, want %d", n, workers*each)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, nil)
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for range 2 {
		if err := c.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown() = %v, want nil", err)
		}
	}
	if err := c.Publish(ctx, broker.Message{Body: []byte("{}")}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Publish() after Shutdown = %v, want broker.ErrClosed", err)
	}
	if _, ok := <-c.Deliveries(); ok {
		t.Fatalf("Deliveries() still open after Shutdown")
	}
	if c.Ready() {
		t.Fatalf("Ready() = true after Shutdown")
	}
	if err := c.Run(ctx); err == nil {
		t.Fatalf("Run() after Shutdown = nil, want error")
	}
}

func TestRunStopsWithContext(t *testing.T) {
	e := newEnv(t, nil)
	c, err := New(e.cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	// No Connect: Run dials by itself.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "client ready", 10*time.Second, c.Ready)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run() did not return after ctx cancel")
	}
	sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer scancel()
	if err := c.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}

func TestShutdownAfterConnectOnly(t *testing.T) {
	e := newEnv(t, nil)
	c, err := New(e.cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if _, ok := <-c.Deliveries(); ok {
		t.Fatalf("Deliveries() still open after Shutdown")
	}
}

func TestConcurrentAck(t *testing.T) {
	const total = 200
	e := newEnv(t, func(c *Config) { c.Prefetch = 50 })
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range total {
		wg.Go(func() {
			if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte("{}"), MessageID: fmt.Sprint(i)}); err != nil {
				t.Errorf("PublishTo() = %v", err)
			}
		})
	}
	errs := make(chan error, total)
	seen := map[string]bool{}
	for len(seen) < total {
		d := receive(t, c, 10*time.Second)
		if seen[d.MessageID] {
			t.Fatalf("delivery %s twice", d.MessageID)
		}
		seen[d.MessageID] = true
		wg.Go(func() {
			if d.MessageID == "7" {
				errs <- d.Nack(false)
				return
			}
			errs <- d.Ack()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Ack()/Nack() from many goroutines = %v, want nil", err)
		}
	}
	waitFor(t, "one dead-lettered message", 5*time.Second, func() bool { return e.admin.count(e.cfg.DeadLetterQueue) == 1 })
	if n := e.admin.count(e.cfg.ExecuteQueue); n != 0 {
		t.Fatalf("execute queue holds %d messages, want 0", n)
	}
}

func TestRunRetriesWhileBrokerUnreachable(t *testing.T) {
	logger, logs := capturingLogger(t)
	c, err := New(Config{
		URL: "amqp://guest:topsecret@127.0.0.1:1/", ExecuteQueue: "e", StatusQueue: "s",
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
	}, logger)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	waitFor(t, "reconnect attempts in the log", 5*time.Second, func() bool { return strings.Count(logs.String(), "reconnect failed") >= 4 })
	if c.Ready() {
		t.Fatalf("Ready() = true with no broker")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := c.Publish(ctx, broker.Message{Body: []byte("{}")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish() with no broker = %v, want context.DeadlineExceeded", err)
	}
	sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer scancel()
	if err := c.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if out := logs.String(); strings.Contains(out, "topsecret") || !strings.Contains(out, "guest:***@127.0.0.1:1") {
		t.Fatalf("log does not mask the password:\n%s", out)
	}
}
