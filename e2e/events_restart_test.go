package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/cluster"
)

// TestJobEventsAfterBrokerRestart: a hub publishing job events survives
// a broker crash: after the broker is back, a new job's accepted, log and
// finished events reach a consumer bound to the exchange, and the job's
// status is published as before.
func TestJobEventsAfterBrokerRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	port, err := cluster.FreePortBase(0, cluster.PrivateBrokerDistOffset)
	if err != nil {
		t.Fatalf("FreePortBase() = %v", err)
	}
	broker, err := cluster.StartPrivateBroker(ctx, fmt.Sprintf("bte2eevents%d", port), t.TempDir(), port)
	if err != nil {
		t.Fatalf("StartPrivateBroker() = %v (is rabbitmq-server installed? scripts/ensure-rabbitmq)", err)
	}
	t.Cleanup(broker.Kill)
	e := newEnv(t, broker.URL)
	const exchange = "blacktree.events"
	h := e.startHub("--events-exchange", exchange)
	e.startWorker("events-restart", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "1s", "--noop-log-lines", "2")
	e.waitWorkers(h, 1, 30*time.Second)
	// Have the exchange and queues on disk before the crash (see SyncMetadata).
	if err := broker.SyncMetadata(ctx); err != nil {
		t.Fatalf("SyncMetadata() = %v", err)
	}
	e.publish(ctx, "before-restart")
	if _, err := e.cp.WaitFor(ctx, "before-restart"); err != nil {
		t.Fatalf("before the restart: %v%s", err, e.diagnose(h))
	}

	if err := broker.Restart(ctx); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	if err := e.cp.Reconnect(broker.URL); err != nil {
		t.Fatalf("control plane after the restart: %v", err)
	}
	conn, err := amqp.Dial(broker.URL)
	if err != nil {
		t.Fatalf("amqp.Dial() after the restart = %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("Channel() = %v", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("QueueDeclare() = %v", err)
	}
	if err := ch.QueueBind(q.Name, "job.after-restart.*", exchange, false, nil); err != nil {
		t.Fatalf("QueueBind() = %v (the exchange did not survive the restart?)", err)
	}
	events, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatalf("Consume() = %v", err)
	}

	e.waitWorkers(h, 1, time.Minute)
	e.publish(ctx, "after-restart")
	var kinds []string
	for done := false; !done; {
		select {
		case d := <-events:
			kind := d.RoutingKey[len("job.after-restart."):]
			kinds = append(kinds, kind)
			done = kind == "finished"
		case <-ctx.Done():
			t.Fatalf("after the restart, events %v and no finished event%s", kinds, e.diagnose(h))
		}
	}
	if len(kinds) < 3 || kinds[0] != "accepted" || kinds[1] != "log" {
		t.Errorf("events after the restart = %v, want accepted, log..., finished", kinds)
	}
	if _, err := e.cp.WaitFor(ctx, "after-restart"); err != nil {
		t.Fatalf("status after the restart: %v%s", err, e.diagnose(h))
	}
	record(t, "events after a broker restart: %v", kinds)
}
