package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/cluster"
)

// TestJobEvents: a hub with --events-exchange publishes, for a job that
// prints, accepted, then log events, then finished, seq 1..n without a
// gap; btctl logs -f prints the job's lines while it runs (before its
// status is published) and exits 0 on its success.
func TestJobEvents(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	exchange := "e2e.events." + randomHex(6)
	h := e.startHub("--events-exchange", exchange)
	e.startWorker("events", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "4s", "--noop-log-lines", "3")
	e.waitWorkers(h, 1, 30*time.Second)

	conn, err := amqp.Dial(sharedAMQP)
	if err != nil {
		t.Fatalf("amqp.Dial() = %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("Channel() = %v", err)
	}
	t.Cleanup(func() { deleteExchange(t, exchange) })
	// The hub declared the exchange at start: a passive declare fails if not.
	if err := ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("events exchange not declared by the hub: %v", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("QueueDeclare() = %v", err)
	}
	if err := ch.QueueBind(q.Name, "job.#", exchange, false, nil); err != nil {
		t.Fatalf("QueueBind() = %v", err)
	}
	events, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatalf("Consume() = %v", err)
	}

	id := "events-" + randomHex(4)
	follower, err := cluster.Start("btctl logs", bins.Ctl, []string{"logs", "-f", "--amqp-url", sharedAMQP, "--events-exchange", exchange, "--timeout", "2m", id}, nil, nil)
	if err != nil {
		t.Fatalf("start btctl: %v", err)
	}
	e.procs = append(e.procs, follower)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Events published before btctl subscribed are not seen: publish
	// once it says it follows the job.
	if err := follower.WaitOutput(ctx, "following job "+id); err != nil {
		t.Fatalf("btctl logs -f did not subscribe: %v\n%s", err, follower.Output())
	}
	e.publish(ctx, id)

	// btctl prints a line of the running job before the job's status exists.
	if err := follower.WaitOutput(ctx, "line 1 of 3"); err != nil {
		t.Fatalf("btctl logs -f never printed the job's first line: %v\n%s", err, follower.Output())
	}
	if n := len(e.cp.Statuses(id)); n != 0 {
		t.Errorf("the job's status was published before btctl printed its first line; want the line live")
	}

	var kinds []string
	var seqs []uint64
	for done := false; !done; {
		select {
		case d := <-events:
			var ev struct {
				JobID    string          `json:"jobId"`
				Event    string          `json:"event"`
				WorkerID string          `json:"workerId"`
				Seq      uint64          `json:"seq"`
				Time     string          `json:"time"`
				Data     string          `json:"data"`
				Response json.RawMessage `json:"response"`
			}
			if err := json.Unmarshal(d.Body, &ev); err != nil {
				t.Fatalf("event body %q: %v", d.Body, err)
			}
			if ev.JobID != id || d.RoutingKey != "job."+id+"."+ev.Event {
				t.Fatalf("event %s with routing key %q, want job %s", d.Body, d.RoutingKey, id)
			}
			if _, err := time.Parse(time.RFC3339Nano, ev.Time); err != nil || ev.WorkerID == "" {
				t.Errorf("event %s: bad time or no workerId", d.Body)
			}
			kinds, seqs = append(kinds, ev.Event), append(seqs, ev.Seq)
			if ev.Event == "finished" {
				if !strings.Contains(string(ev.Response), `"success":true`) {
					t.Errorf("finished response = %s, want a success", ev.Response)
				}
				done = true
			}
		case <-ctx.Done():
			t.Fatalf("events so far %v: no finished event", kinds)
		}
	}
	logs := 0
	for i, k := range kinds {
		if seqs[i] != uint64(i+1) {
			t.Errorf("event %d (%s) has seq %d, want %d (1..n without gaps)", i, k, seqs[i], i+1)
		}
		if k == "log" {
			logs++
		}
	}
	if kinds[0] != "accepted" || kinds[len(kinds)-1] != "finished" || logs < 1 || logs != len(kinds)-2 {
		t.Errorf("events = %v, want accepted, ≥1 log, finished", kinds)
	}
	select {
	case <-follower.Done():
	case <-ctx.Done():
		t.Fatalf("btctl logs -f did not exit after the finished event:\n%s", follower.Output())
	}
	if code := follower.ExitCode(); code != 0 {
		t.Errorf("btctl logs -f exit code = %d, want 0 (job succeeded):\n%s", code, follower.Output())
	}
	record(t, "events %v, seq 1..%d; btctl logs -f printed a line before the status", kinds, len(kinds))
}

// TestLogsWithoutEventsExchange: btctl logs against a deployment whose
// hubs publish no events says so and exits 3.
func TestLogsWithoutEventsExchange(t *testing.T) {
	p, err := cluster.Start("btctl logs", bins.Ctl, []string{"logs", "-f", "--amqp-url", sharedAMQP, "--events-exchange", "e2e.noevents." + randomHex(6), "job-x"}, nil, nil)
	if err != nil {
		t.Fatalf("start btctl: %v", err)
	}
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		p.Kill()
		t.Fatal("btctl logs did not exit")
	}
	if code := p.ExitCode(); code != 3 || !strings.Contains(p.Output(), "--events-exchange") {
		t.Errorf("btctl logs = exit %d, %q; want 3 and a hint at --events-exchange", code, p.Output())
	}
}

// deleteExchange deletes a test's events exchange (durable: it outlives
// the hub).
func deleteExchange(t *testing.T, name string) {
	conn, err := amqp.Dial(sharedAMQP)
	if err != nil {
		t.Logf("delete exchange %s: %v", name, err)
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		_ = ch.ExchangeDelete(name, false, false)
	}
}
