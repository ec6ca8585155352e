package cluster

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func declareAndPublish(t *testing.T, url string) {
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
	if _, err := ch.QueueDeclare("durable.q", true, false, false, false, nil); err != nil {
		t.Fatalf("QueueDeclare() = %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("Confirm() = %v", err)
	}
	conf, err := ch.PublishWithDeferredConfirm("", "durable.q", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("x")})
	if err != nil || !conf.Wait() {
		t.Fatalf("Publish() = %v", err)
	}
}

func depth(t *testing.T, url, q string) int {
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
	qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("QueueDeclarePassive() = %v", err)
	}
	return qi.Messages
}
