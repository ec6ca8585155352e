package cluster

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// withChannel runs f on a channel of a new connection to url, failing the
// test on any error.
func withChannel(t *testing.T, url string, f func(ch *amqp.Channel) error) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("Channel() = %v", err)
	}
	if err := f(ch); err != nil {
		t.Fatalf("on %s: %v", url, err)
	}
}

func declareQueues(t *testing.T, url string, names ...string) {
	withChannel(t, url, func(ch *amqp.Channel) error {
		for _, n := range names {
			if _, err := ch.QueueDeclare(n, true, false, false, false, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

func deleteQueues(t *testing.T, url string, names ...string) {
	withChannel(t, url, func(ch *amqp.Channel) error {
		for _, n := range names {
			if _, err := ch.QueueDelete(n, false, false, false); err != nil {
				return err
			}
		}
		return nil
	})
}

func publishRaw(t *testing.T, url, queue string, body []byte) {
	withChannel(t, url, func(ch *amqp.Channel) error {
		return ch.PublishWithContext(context.Background(), "", queue, false, false, amqp.Publishing{Body: body})
	})
}

func declareAndPublish(t *testing.T, url string) {
	t.Helper()
	withChannel(t, url, func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare("durable.q", true, false, false, false, nil); err != nil {
			return err
		}
		if err := ch.Confirm(false); err != nil {
			return err
		}
		conf, err := ch.PublishWithDeferredConfirm("", "durable.q", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("x")})
		if err != nil {
			return err
		}
		if !conf.Wait() {
			t.Fatalf("publish to durable.q: nacked")
		}
		return nil
	})
}

func depth(t *testing.T, url, q string) int {
	t.Helper()
	var n int
	withChannel(t, url, func(ch *amqp.Channel) error {
		qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		n = qi.Messages
		return err
	})
	return n
}
