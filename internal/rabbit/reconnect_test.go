package rabbit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/broker"
)

// TestReconnect kills both connections server-side while a delivery is held
// and publishes are in flight, and checks that the client recovers and that
// every message is accounted for.
func TestReconnect(t *testing.T) {
	for _, qt := range []string{QueueTypeClassic, QueueTypeQuorum} {
		t.Run(qt, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.QueueType = qt
				// A long enough outage to start a Publish inside it.
				c.ReconnectMin, c.ReconnectMax = 2*time.Second, 2*time.Second
			})
			c := e.start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()

			if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte(`{"jobId":"held"}`), MessageID: "held"}); err != nil {
				t.Fatalf("PublishTo() = %v", err)
			}
			held := receive(t, c, 5*time.Second)

			// Publishers running continuously across the outage.
			const workers = 4
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex // guards ids and pubErr
			var ids []string
			var pubErr error
			publish := func(id string) {
				err := c.Publish(ctx, broker.Message{Body: []byte(`{"jobId":"` + id + `"}`), MessageID: id})
				mu.Lock()
				defer mu.Unlock()
				if err != nil && pubErr == nil {
					pubErr = fmt.Errorf("Publish(%s) = %w", id, err)
				}
				ids = append(ids, id)
			}
			for w := range workers {
				wg.Go(func() {
					tick := time.NewTicker(5 * time.Millisecond) // a steady stream, not a flood
					defer tick.Stop()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						publish(fmt.Sprintf("bg-%d-%d", w, i))
					}
				})
			}

			killConnection(t, e.cfg.ConnectionName+"-publish")
			waitFor(t, "publisher down after the kill", 5*time.Second, func() bool { return !c.pub.up.Load() })
			if c.Ready() {
				t.Fatalf("Ready() = true while the publisher is down")
			}
			// A Publish started during the outage.
			wg.Go(func() { publish("during-outage") })
			killConnection(t, e.cfg.ConnectionName+"-consume")
			waitFor(t, "consumer down after the kill", 5*time.Second, func() bool { return !c.cons.up.Load() })

			waitFor(t, "Ready() = true after reconnect", 15*time.Second, c.Ready)
			close(stop)
			wg.Wait()
			if pubErr != nil {
				t.Fatalf("%v across the outage, want nil", pubErr)
			}

			// The held delivery is stale and comes again.
			if err := held.Ack(); !errors.Is(err, broker.ErrStaleDelivery) {
				t.Fatalf("Ack() of a delivery from the dead channel = %v, want ErrStaleDelivery", err)
			}
			again := receive(t, c, 10*time.Second)
			if again.MessageID != "held" || !again.Redelivered {
				t.Fatalf("after reconnect got %q redelivered=%v, want held redelivered=true", again.MessageID, again.Redelivered)
			}
			if err := again.Ack(); err != nil {
				t.Fatalf("Ack() after reconnect = %v", err)
			}

			// Every publish is on the status queue (at least once).
			seen := map[string]int{}
			for n := e.admin.count(e.cfg.StatusQueue); n > 0; n-- {
				seen[e.admin.get(e.cfg.StatusQueue).MessageId]++
			}
			for _, id := range ids {
				if seen[id] == 0 {
					t.Errorf("message %s confirmed but lost across the reconnect", id)
				}
			}
			t.Logf("%d messages published across the outage, %d distinct on the status queue", len(ids), len(seen))
			if n := e.admin.count(e.cfg.ExecuteQueue); n != 0 {
				t.Fatalf("execute queue holds %d messages, want 0", n)
			}
		})
	}
}

// TestPublishOutageContext checks that a Publish during an outage
// gives up when its ctx ends.
func TestPublishOutageContext(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReconnectMin, c.ReconnectMax = 3*time.Second, 3*time.Second })
	c := e.start(t)
	killConnection(t, e.cfg.ConnectionName+"-publish")
	waitFor(t, "Ready() = false after the kill", 5*time.Second, func() bool { return !c.Ready() })
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := c.Publish(ctx, broker.Message{Body: []byte("{}"), MessageID: "x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish() during an outage with a short ctx = %v, want context.DeadlineExceeded", err)
	}
}
