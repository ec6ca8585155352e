package rabbit

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/cluster"
)

// TestCancelQueueAndAnnouncements: a message on the cancel queue reaches a
// replica's CancelDeliveries, and a cancel announced by one replica reaches
// the others' CancelAnnouncements, never their Adoptions.
func TestCancelQueueAndAnnouncements(t *testing.T) {
	e := newEnv(t, func(cfg *Config) { cfg.CancelQueue = cfg.ExecuteQueue + ".cancel" })
	t.Cleanup(func() {
		if c, err := amqp.Dial(cluster.SharedBrokerURL()); err == nil {
			if ch, err := c.Channel(); err == nil {
				_, _ = ch.QueueDelete(e.cfg.CancelQueue, false, false, false)
			}
			c.Close()
		}
	})
	a := e.start(t)
	b := startAnother(t, e, "b", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	body := []byte(`{"jobId":"job-1","reason":"user asked"}`)
	if err := a.PublishTo(ctx, e.cfg.CancelQueue, broker.Message{Body: body}); err != nil {
		t.Fatalf("PublishTo(cancel queue) = %v", err)
	}
	select {
	case d := <-a.CancelDeliveries():
		if string(d.Body) != string(body) {
			t.Errorf("cancel delivery body = %q, want %q", d.Body, body)
		}
		if err := d.Ack(); err != nil {
			t.Errorf("Ack() = %v", err)
		}
	case d := <-b.CancelDeliveries():
		if string(d.Body) != string(body) {
			t.Errorf("cancel delivery body = %q, want %q", d.Body, body)
		}
		if err := d.Ack(); err != nil {
			t.Errorf("Ack() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cancel delivery within 10s")
	}

	want := broker.CancelRequest{HubID: "hub-a", JobID: "job-1", Reason: "user asked"}
	if err := a.AnnounceCancel(ctx, want); err != nil {
		t.Fatalf("AnnounceCancel() = %v", err)
	}
	select {
	case got := <-b.CancelAnnouncements():
		if got != want {
			t.Errorf("replica b got %+v, want %+v", got, want)
		}
	case got := <-b.Adoptions():
		t.Fatalf("a cancel arrived as an adoption: %+v", got)
	case <-time.After(5 * time.Second):
		t.Fatal("no cancel announcement within 5s")
	}
}
