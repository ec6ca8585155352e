package hub

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// fakeBroker is an in-memory Broker for unit tests of hub logic that do
// not concern RabbitMQ itself.
type fakeBroker struct {
	ch chan broker.Delivery

	mu        sync.Mutex // guards the following
	failNext  int        // Publish fails this many more times
	published []broker.Message
}

func (b *fakeBroker) Deliveries() <-chan broker.Delivery  { return b.ch }
func (b *fakeBroker) StopConsuming(context.Context) error { return nil }
func (b *fakeBroker) Ready() bool                         { return true }
func (b *fakeBroker) Publish(_ context.Context, m broker.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failNext > 0 {
		b.failNext--
		return errors.New("broker unavailable")
	}
	b.published = append(b.published, m)
	return nil
}

func (b *fakeBroker) publishedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.published)
}

// fakeAcker records how a delivery was settled.
type fakeAcker struct {
	mu      sync.Mutex // guards the following
	settled string     // "", "ack", "nack-requeue", "nack-drop"
}

func (a *fakeAcker) Ack() error { return a.set("ack") }
func (a *fakeAcker) Nack(requeue bool) error {
	if requeue {
		return a.set("nack-requeue")
	}
	return a.set("nack-drop")
}
func (a *fakeAcker) set(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.settled != "" {
		return errors.New("already settled")
	}
	a.settled = s
	return nil
}
func (a *fakeAcker) get() string { a.mu.Lock(); defer a.mu.Unlock(); return a.settled }

func startFakeHub(t *testing.T, mutate func(*Config)) (*Hub, *fakeBroker) {
	t.Helper()
	fb := &fakeBroker{ch: make(chan broker.Delivery)}
	return startHubOn(t, fb, mutate), fb
}

// startHubOn runs a hub on b until the test ends.
func startHubOn(t *testing.T, b Broker, mutate func(*Config)) *Hub {
	t.Helper()
	cfg := Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "-", DrainTimeout: time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg, b, hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: testWriter{t}}))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(context.Background()) }()
	<-h.Listening()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		<-done
	})
	return h
}

func deliver(t *testing.T, fb *fakeBroker, req *blacktreev1.JobRequest) *fakeAcker {
	t.Helper()
	body, err := jobspec.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAcker{}
	select {
	case fb.ch <- broker.Delivery{Body: body, MessageID: req.GetJobId(), Acker: a}:
	case <-time.After(5 * time.Second):
		t.Fatal("dispatcher did not take the delivery")
	}
	return a
}

// docs/protocol.md#results: ResultAck only after the broker confirmed; a failing
// publish is retried, never dropped.
func TestResultAckOnlyAfterConfirm(t *testing.T) {
	h, fb := startFakeHub(t, func(c *Config) { c.PublishRetryMax = 100 * time.Millisecond })
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1"}, false)
	a := deliver(t, fb, validJob("pub-1"))
	w.accept(w.expectRunJob().GetJobId())
	eventually(t, 5*time.Second, "delivery acked after JobAccepted", func() bool { return a.get() == "ack" })
	fb.mu.Lock()
	fb.failNext = 3
	fb.mu.Unlock()
	w.result("pub-1", true)
	w.expectResultAck("pub-1")
	if n := fb.publishedCount(); n != 1 {
		t.Errorf("published = %d when ResultAck arrived, want 1", n)
	}
}

// JobRejected and a missing answer both move the job to another worker.
func TestRejectAndAcceptTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(f *fakeWorker, id string)
	}{
		{name: "rejected", answer: func(f *fakeWorker, id string) {
			f.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobRejected{JobRejected: &blacktreev1.JobRejected{
				JobId: id, Reason: blacktreev1.RejectReason_REJECT_REASON_NO_CAPACITY}}})
		}},
		{name: "no answer", answer: func(*fakeWorker, string) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, fb := startFakeHub(t, func(c *Config) { c.AcceptTimeout = 300 * time.Millisecond })
			w1 := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "a"}, false)
			a := deliver(t, fb, validJob("rj-1"))
			tc.answer(w1, w1.expectRunJob().GetJobId())
			if got := a.get(); got != "" {
				t.Fatalf("delivery settled %q before any acceptance, want unsettled", got)
			}
			w2 := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "b"}, false)
			if got := w2.expectRunJob().GetJobId(); got != "rj-1" {
				t.Fatalf("RunJob on b = %q, want rj-1", got)
			}
			w2.accept("rj-1")
			eventually(t, 5*time.Second, "acked after b accepted", func() bool { return a.get() == "ack" })
		})
	}
}

// Unreadable bodies are dead-lettered (nack without requeue).
func TestUnreadableDeadLettered(t *testing.T) {
	h, fb := startFakeHub(t, nil)
	_ = h
	a := &fakeAcker{}
	fb.ch <- broker.Delivery{Body: []byte{0xff, 0xfe}, Acker: a}
	eventually(t, 5*time.Second, "dead-lettered", func() bool { return a.get() == "nack-drop" })
}
