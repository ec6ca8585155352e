package rabbit

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/cluster"
)

// TestPublishesWaitOutAMemoryAlarm: while the broker's memory alarm blocks
// the publisher connection (the broker stops reading its socket), Publish
// calls wait: none fails, none is reported confirmed, and the batching
// writer stops taking bytes at its bound instead of buffering without
// limit. The connection outlives the alarm, although the alarm lasts longer
// than three heartbeat intervals and amqp091's heartbeater is stuck behind
// the blocked write meanwhile (batchConn.Read re-arms the read deadline).
// Once the alarm clears every one is confirmed and the status queue holds
// each exactly once. A node of its own, so that the alarm blocks no other
// test.
func TestPublishesWaitOutAMemoryAlarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	node, err := cluster.StartPrivateBroker(ctx, "btrabbitalarm", t.TempDir(), 5712)
	if err != nil {
		t.Fatalf("StartPrivateBroker() = %v (is rabbitmq-server installed? scripts/ensure-rabbitmq)", err)
	}
	t.Cleanup(node.Kill)
	const heartbeat = time.Second
	e := newEnv(t, func(c *Config) { c.URL, c.Heartbeat = node.URL, heartbeat })
	c := e.start(t)

	first := broker.Message{Body: []byte(`{"jobId":"before"}`), MessageID: "before"}
	if err := c.Publish(ctx, first); err != nil {
		t.Fatalf("Publish() before the alarm = %v, want nil", err)
	}
	if err := node.SetMemoryAlarm(ctx, true); err != nil {
		t.Fatal(err)
	}
	alarmCleared := false
	defer func() {
		if !alarmCleared {
			_ = node.SetMemoryAlarm(context.Background(), false)
		}
	}()

	// 19.2 MB: several times what loopback's socket buffers took here
	// (about 4.4 MB) plus the writer's bound, so the back-pressure reaches
	// Write.
	const n, size = 600, 32 << 10
	body := bytes.Repeat([]byte("x"), size)
	results := make(chan error, n)
	for i := range n {
		go func() {
			id := fmt.Sprintf("blocked-%03d", i)
			results <- c.Publish(ctx, broker.Message{Body: body, MessageID: id})
		}()
	}
	select {
	case err := <-results:
		t.Fatalf("a Publish returned %v while the memory alarm blocked the publisher, want it to wait", err)
	case <-time.After(5 * heartbeat): // past the read deadline amqp091 sets: 3 intervals
	}
	c.pub.mu.Lock()
	s := c.pub.cur
	c.pub.mu.Unlock()
	if s == nil {
		t.Fatal("no publish session during the alarm")
	}
	// amqp091 writes one publisher at a time, so exactly one Write waits
	// at the bound while the rest queue on the library's send lock.
	pending, blocked := s.conn.batch.state()
	if blocked != 1 || pending < maxBatchPending || pending > maxBatchPending+size+64<<10 {
		t.Fatalf("during the alarm: %d bytes pending and %d Writes waiting, want ~%d pending (the bound) and 1 waiting",
			pending, blocked, maxBatchPending)
	}

	if err := node.SetMemoryAlarm(ctx, false); err != nil {
		t.Fatal(err)
	}
	alarmCleared = true
	for range n {
		select {
		case err := <-results:
			if err != nil {
				t.Fatalf("Publish() after the alarm cleared = %v, want nil", err)
			}
		case <-ctx.Done():
			t.Fatalf("Publish() calls still waiting after the alarm cleared: %v", ctx.Err())
		}
	}

	c.pub.mu.Lock()
	after := c.pub.cur
	c.pub.mu.Unlock()
	if after != s {
		t.Errorf("publish session after the alarm is a new one, want the connection to have outlived the alarm")
	}

	seen := statusIDs(t, node.URL, e.cfg.StatusQueue)
	if len(seen) != n+1 || seen["before"] != 1 {
		t.Fatalf("status queue holds %d distinct ids (before: %d), want %d with before once", len(seen), seen["before"], n+1)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("status %s stored %d times, want once", id, k)
		}
	}
}

// statusIDs drains queue on url and counts its messages by message id.
func statusIDs(t *testing.T, url, queue string) map[string]int {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial %s: %v", MaskURL(url), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	seen := map[string]int{}
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return seen
		}
		seen[d.MessageId]++
	}
}
