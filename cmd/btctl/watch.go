package main

import (
	"context"
	"fmt"
	"time"
)

const usageWatch = `Usage: btctl watch [flags]

Show the JobResponses in status.queue, one line each (--json: the message
bodies as JSON lines).

status.queue is the control plane's, and RabbitMQ cannot show a queue's
messages without delivering them to someone, so watch has two modes:

  peek (default): NON-DESTRUCTIVE snapshot. watch takes the messages that are
    in the queue right now (up to --max), holding them unacked, prints them,
    and hands every one back by closing its channel: they return to the queue
    in their order, marked redelivered. It does not follow: run it again (or
    under watch(1)) to refresh. While it looks (well under a second) the
    control plane does not see those messages; on quorum queues with a
    delivery-limit each peek counts as one delivery attempt.

  --consume: DESTRUCTIVE tail. watch acks each status after printing it and
    keeps going until interrupted (or --count statuses). This takes the
    statuses away from the control plane: use it only where btctl IS the
    status consumer (development, demos) or to empty a queue on purpose.

Exit status: 0, 3 broker unreachable or queue missing.

Examples:
  btctl watch                          # what is waiting, nothing removed
  btctl watch --logs --max 5           # the first five, with their logs
  btctl watch --consume --json | jq .  # dev: follow and remove
  btctl watch --consume --count 1      # take exactly one status
`

func runWatch(ctx context.Context, args []string, e env) error {
	fs, c := newFlagSet("watch", usageWatch, e)
	consume := fs.Bool("consume", false, "take (ack) statuses and follow the queue: DESTRUCTIVE, see above")
	asJSON := fs.Bool("json", false, "print message bodies as JSON lines")
	logs := fs.Bool("logs", false, "print each job's logs under its line")
	maxN := fs.Int("max", 100, "peek: show at most this many messages")
	count := fs.Int("count", 0, "--consume: exit after this many statuses (0: until interrupted)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("watch takes no arguments, got %q", pos[0])
	}
	if *maxN < 1 || *maxN > 10000 {
		return usageErr("--max must be between 1 and 10000")
	}
	if *count < 0 {
		return usageErr("--count must be >= 0")
	}
	a, err := dialAMQP(c)
	if err != nil {
		return err
	}
	defer a.close()
	ready, err := a.inspect(c.statusQueue, "--status-queue")
	if err != nil {
		return err
	}
	if *consume {
		return watchConsume(ctx, a, c.statusQueue, *count, *asJSON, *logs, e)
	}
	return watchPeek(ctx, a, c.statusQueue, min(ready, *maxN), *asJSON, *logs, e)
}

// watchPeek prints up to n messages and hands them all back (the deferred
// close of the channel requeues every unacked delivery).
func watchPeek(ctx context.Context, a *amqpConn, queue string, n int, asJSON, logs bool, e env) error {
	if n == 0 {
		fmt.Fprintf(e.stderr, "btctl: %s is empty\n", queue)
		return nil
	}
	deliveries, err := a.consume(queue, n)
	if err != nil {
		return err
	}
	// Another consumer may take some of the n first: stop when the queue
	// has been quiet for a moment.
	const idle = 500 * time.Millisecond
	timer := time.NewTimer(idle)
	defer timer.Stop()
	shown := 0
	for shown < n {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return a.closedErr(queue)
			}
			printStatus(e.stdout, d, asJSON, logs)
			shown++
			timer.Reset(idle)
		}
	}
	return nil
}

// watchConsume prints and acks statuses until ctx ends or count is reached.
func watchConsume(ctx context.Context, a *amqpConn, queue string, count int, asJSON, logs bool, e env) error {
	deliveries, err := a.consume(queue, 32)
	if err != nil {
		return err
	}
	taken := 0
	for count == 0 || taken < count {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return a.closedErr(queue)
			}
			printStatus(e.stdout, d, asJSON, logs)
			if err := d.Ack(false); err != nil {
				return infraErr("ack status on %q: %v", queue, err)
			}
			taken++
		}
	}
	return nil
}
