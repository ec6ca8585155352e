package rabbit

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"
)

// queueArgs returns the declare arguments of a queue of the configured type,
// with a dead-letter route to dlq when dlq is not empty. Classic queues get no
// x-queue-type argument, so a queue declared by tools that do not set it
// stays equivalent.
func queueArgs(queueType, dlq string) amqp.Table {
	args := amqp.Table{}
	if queueType == QueueTypeQuorum {
		args[amqp.QueueTypeArg] = amqp.QueueTypeQuorum
	}
	if dlq != "" {
		// The default exchange routes by queue name.
		args["x-dead-letter-exchange"] = ""
		args["x-dead-letter-routing-key"] = dlq
	}
	return args
}

// declareQueue declares a durable queue on a channel of its own, because a
// failed declare closes the channel. When the queue exists with different
// arguments (PRECONDITION_FAILED) it falls back to a passive declare and
// uses the queue as it is, logging a warning.
func declareQueue(conn *amqp.Connection, name string, args amqp.Table, log hclog.Logger) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	_, err = ch.QueueDeclare(name, true, false, false, false, args)
	if err == nil {
		return ch.Close()
	}
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
		_ = ch.Close()
		return fmt.Errorf("declare queue %q: %w", name, err)
	}
	// The broker closed ch with the 406; check the queue exists on a new one.
	ch, err = conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if _, perr := ch.QueueDeclarePassive(name, true, false, false, false, nil); perr != nil {
		return fmt.Errorf("declare queue %q: %w", name, perr)
	}
	log.Warn("queue exists with different arguments; using it as it is",
		"queue", name, "wanted_args", fmt.Sprint(args), "error", aerr.Reason)
	return nil
}

// declareConsumeTopology declares the dead-letter queue (when configured)
// and the execute queue routed to it.
func declareConsumeTopology(conn *amqp.Connection, cfg Config, log hclog.Logger) error {
	if cfg.DeadLetterQueue != "" {
		if err := declareQueue(conn, cfg.DeadLetterQueue, queueArgs(cfg.QueueType, ""), log); err != nil {
			return err
		}
	}
	return declareQueue(conn, cfg.ExecuteQueue, queueArgs(cfg.QueueType, cfg.DeadLetterQueue), log)
}

// declarePublishTopology declares the status queue, the ledger queue
// (when enabled) and the cancel queue (when set), so that publishing to either never waits for a consumer.
func declarePublishTopology(conn *amqp.Connection, cfg Config, log hclog.Logger) error {
	if cfg.CancelQueue != "" {
		if err := declareQueue(conn, cfg.CancelQueue, queueArgs(cfg.QueueType, ""), log); err != nil {
			return err
		}
	}
	if cfg.LedgerQueue != "" {
		if err := declareQueue(conn, cfg.LedgerQueue, ledgerArgs(cfg.QueueType), log); err != nil {
			return err
		}
	}
	return declareQueue(conn, cfg.StatusQueue, queueArgs(cfg.QueueType, ""), log)
}

// DeclareQueues declares the execute, dead-letter and status queues on a
// short-lived connection and closes it. Connect and every reconnect do this
// anyway; the helper is for tools (btctl) and tests that only need the
// topology.
func (c *Client) DeclareQueues(ctx context.Context) error {
	conn, err := c.dial(ctx, "declare")
	if err != nil {
		return err
	}
	defer conn.close(c.cfg.RPCTimeout)
	err = conn.bounded(c.cfg.RPCTimeout, "declare queues", func() error {
		if err := declareConsumeTopology(conn.Connection, c.cfg, c.log); err != nil {
			return err
		}
		return declarePublishTopology(conn.Connection, c.cfg, c.log)
	})
	if err != nil {
		return fmt.Errorf("rabbit: %w", err)
	}
	return nil
}
