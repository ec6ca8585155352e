package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/cliflags"
	"github.com/blacktree/blacktree/internal/jobspec"
)

const usageLogs = `Usage: btctl logs -f [flags] JOBID

Follow a job's output live: btctl binds a private queue (exclusive,
auto-delete) to the hub's job events exchange for the job's events
(routing key job.JOBID.*), prints each chunk of output to stdout as it
arrives, and at the job's finished event prints its outcome to stderr and
exits 0 if the job succeeded, 1 if it failed. The hubs must run with
--events-exchange (the same name as --events-exchange here).

-f is required: events are live and nothing keeps them, so there is no
"print what is there" mode. A finished job's logs are in its status
(btctl watch --logs).

Events published before btctl subscribed are not seen: btctl prints
"btctl: following job JOBID" to stderr once it has subscribed; start it
before submitting the job, or right after. A job that finished before btctl
subscribed sends no more events; --timeout bounds that wait (its outcome
is on status.queue). Events are best effort: a gap in the output (dropped
events, or output lost while the job's worker moved to another hub) is
noted on stderr; the complete log is in the job's status.

Exit status: 0 the job succeeded, 1 it failed, 2 usage error, 3 broker
unreachable, events exchange missing, connection lost or --timeout.

Examples:
  btctl submit --repo acme/api --image acme/api:dev --job-id build-42
  btctl logs -f build-42
  btctl logs -f --timeout 10m build-42 > build-42.log
`

// jobEvent is the part of a job event's JSON body btctl reads
// (docs/protocol.md#job-events).
type jobEvent struct {
	JobID    string          `json:"jobId"`
	Event    string          `json:"event"`
	WorkerID string          `json:"workerId"`
	HubID    string          `json:"hubId"`
	Seq      uint64          `json:"seq"`
	Chunk    *uint64         `json:"chunk"`
	Data     string          `json:"data"`
	Response json.RawMessage `json:"response"`
}

func runLogs(ctx context.Context, args []string, e env) error {
	fs, c := newFlagSet("logs", usageLogs, e)
	follow := fs.Bool("f", false, "follow the job's output until it finishes (required)")
	fs.BoolVar(follow, "follow", false, "same as -f")
	exchange := fs.String("events-exchange", cliflags.EnvOr(e.getenv, "BLACKTREE_EVENTS_EXCHANGE", "blacktree.events"), "the hubs' job events `exchange` [BLACKTREE_EVENTS_EXCHANGE]")
	timeout := fs.Duration("timeout", 0, "exit 3 when no event of the job arrives for this long (0: wait until interrupted)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("logs takes one JOBID (see btctl logs --help)")
	}
	jobID := pos[0]
	if err := jobspec.ValidJobID(jobID); err != nil {
		return usageErr("%v", err)
	}
	if !*follow {
		return usageErr("logs needs -f: job events are live only; a finished job's logs are in its status (btctl watch --logs)")
	}
	if *timeout < 0 {
		return usageErr("--timeout must be >= 0")
	}
	a, err := dialAMQP(c)
	if err != nil {
		return err
	}
	defer a.close()
	deliveries, err := a.subscribeEvents(*exchange, jobID)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "btctl: following job %s\n", jobID)
	return followEvents(ctx, deliveries, jobID, *timeout, a, e)
}

// subscribeEvents binds a server-named exclusive auto-delete queue to
// exchange for jobID's events and consumes it (auto-ack: events are not
// work). The binding is job.<id>.*, not job.<id>.#: job ids may contain
// dots, and # would also match the events of job "<id>.<more>".
func (a *amqpConn) subscribeEvents(exchange, jobID string) (<-chan amqp.Delivery, error) {
	if err := a.ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return nil, infraErr("events exchange %q does not exist on %s (is the hub running with --events-exchange %s?)", exchange, a.url, exchange)
		}
		return nil, infraErr("inspect exchange %q on %s: %v", exchange, a.url, err)
	}
	q, err := a.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, infraErr("declare a private queue on %s: %v", a.url, err)
	}
	if err := a.ch.QueueBind(q.Name, "job."+jobID+".*", exchange, false, nil); err != nil {
		return nil, infraErr("bind to %q on %s: %v", exchange, a.url, err)
	}
	d, err := a.ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, infraErr("consume job events on %s: %v", a.url, err)
	}
	return d, nil
}

// followEvents prints the job's output until its finished event.
func followEvents(ctx context.Context, deliveries <-chan amqp.Delivery, jobID string, timeout time.Duration, a *amqpConn, e env) error {
	var idle <-chan time.Time
	var timer *time.Timer
	if timeout > 0 {
		timer = time.NewTimer(timeout)
		defer timer.Stop()
		idle = timer.C
	}
	var g gapTracker
	for {
		select {
		case <-ctx.Done():
			return infraErr("interrupted before job %s finished", jobID)
		case <-idle:
			return infraErr("no event of job %s for %s (it may have finished before btctl subscribed: see its status with btctl watch)", jobID, timeout)
		case d, ok := <-deliveries:
			if !ok {
				return a.closedErr("job events")
			}
			var ev jobEvent
			if err := json.Unmarshal(d.Body, &ev); err != nil || ev.JobID != jobID {
				continue // not this job's (or not an event)
			}
			if timer != nil {
				timer.Reset(timeout)
			}
			g.note(ev, e.stderr)
			switch ev.Event {
			case "log":
				if _, err := io.WriteString(e.stdout, ev.Data); err != nil {
					return infraErr("write output: %v", err)
				}
			case "finished":
				return finishedOutcome(jobID, ev, e)
			}
		}
	}
}

// finishedOutcome prints a finished event's outcome and returns the exit
// error: nil for a success, a failedErr otherwise.
func finishedOutcome(jobID string, ev jobEvent, e env) error {
	resp, err := jobspec.DecodeResponse(ev.Response)
	if err != nil {
		return infraErr("job %s finished, but its event carries no readable JobResponse: %v", jobID, err)
	}
	if resp.GetSuccess() {
		fmt.Fprintf(e.stderr, "btctl: job %s succeeded on worker %s: %s\n", jobID, orDash(resp.GetWorkerId()), orDash(resp.GetImageUrl()))
		return nil
	}
	return failedErr("job %s failed at %s: %s", jobID, jobspec.StageName(resp.GetFailedStage()), oneLine(resp.GetError()))
}

// gapTracker notes, on stderr, events a follower did not see: a seq gap
// within one hub's events, and, when the job moved to another hub (whose
// seq starts again at 1), output chunks missing across the move (the
// worker numbers chunks for the job's whole life).
type gapTracker struct {
	hub       string
	seq       uint64
	chunk     uint64
	haveChunk bool
	moved     bool // the hub changed since the last chunk
}

func (g *gapTracker) note(ev jobEvent, w io.Writer) {
	switch {
	case g.hub == "":
	case ev.HubID != g.hub:
		g.moved = true
		fmt.Fprintf(w, "btctl: job %s moved to hub %s (its worker reconnected there)\n", ev.JobID, orDash(ev.HubID))
	case ev.Seq > g.seq+1:
		fmt.Fprintf(w, "btctl: %d events of job %s missing (best effort; the full log is in its status)\n", ev.Seq-g.seq-1, ev.JobID)
	}
	g.hub, g.seq = ev.HubID, ev.Seq
	if ev.Chunk == nil {
		return
	}
	if g.moved && g.haveChunk && *ev.Chunk > g.chunk+1 {
		fmt.Fprintf(w, "btctl: %d chunks of output of job %s missing across the move\n", *ev.Chunk-g.chunk-1, ev.JobID)
	}
	g.chunk, g.haveChunk, g.moved = *ev.Chunk, true, false
}
