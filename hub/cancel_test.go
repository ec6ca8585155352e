package hub

import (
	"context"
	"sync"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// fakeCancelBroker is a fakeBroker with a cancel queue and announcements.
type fakeCancelBroker struct {
	fakeBroker
	cancels chan broker.Delivery
	anns    chan broker.CancelRequest

	annMu     sync.Mutex // guards announced
	announced []broker.CancelRequest
}

func newFakeCancelBroker() *fakeCancelBroker {
	return &fakeCancelBroker{
		fakeBroker: fakeBroker{ch: make(chan broker.Delivery)},
		cancels:    make(chan broker.Delivery),
		anns:       make(chan broker.CancelRequest),
	}
}

func (b *fakeCancelBroker) CancelEnabled() bool                              { return true }
func (b *fakeCancelBroker) CancelDeliveries() <-chan broker.Delivery         { return b.cancels }
func (b *fakeCancelBroker) CancelAnnouncements() <-chan broker.CancelRequest { return b.anns }
func (b *fakeCancelBroker) AnnounceCancel(_ context.Context, r broker.CancelRequest) error {
	b.annMu.Lock()
	defer b.annMu.Unlock()
	b.announced = append(b.announced, r)
	return nil
}

func (b *fakeCancelBroker) announcedCount() int {
	b.annMu.Lock()
	defer b.annMu.Unlock()
	return len(b.announced)
}

// sendCancel puts body on the fake cancel queue.
func (b *fakeCancelBroker) sendCancel(t *testing.T, body string) *fakeAcker {
	t.Helper()
	a := &fakeAcker{}
	select {
	case b.cancels <- broker.Delivery{Body: []byte(body), Acker: a}:
	case <-time.After(5 * time.Second):
		t.Fatal("dispatcher did not take the cancel")
	}
	return a
}

// onlyStatus waits for exactly one published status and returns it.
func (b *fakeCancelBroker) onlyStatus(t *testing.T) *blacktreev1.JobResponse {
	t.Helper()
	eventually(t, 5*time.Second, "a status published", func() bool { return b.publishedCount() >= 1 })
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.published) != 1 {
		t.Fatalf("%d statuses published, want one", len(b.published))
	}
	resp, err := jobspec.DecodeResponse(b.published[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func wantCancelled(t *testing.T, resp *blacktreev1.JobResponse, id, reason string) {
	t.Helper()
	if resp.GetJobId() != id || resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_CANCELLED || resp.GetError() != jobspec.CancelledError(reason) {
		t.Fatalf("status = %v, want %s failed, CANCELLED, %q", resp, id, jobspec.CancelledError(reason))
	}
}

// A held job (no worker) is answered cancelled at once; its delivery and
// the cancel message are acked, and the cancel is announced once.
func TestCancelHeldJob(t *testing.T) {
	fb := newFakeCancelBroker()
	startHubOn(t, fb, func(c *Config) { c.HoldTimeout = time.Minute })
	jobAck := deliver(t, &fb.fakeBroker, validJob("held-1"))
	cancelAck := fb.sendCancel(t, `{"jobId":"held-1","reason":"stop"}`)
	wantCancelled(t, fb.onlyStatus(t), "held-1", "stop")
	eventually(t, 5*time.Second, "job delivery and cancel acked", func() bool {
		return jobAck.get() == "ack" && cancelAck.get() == "ack"
	})
	if n := fb.announcedCount(); n != 1 {
		t.Errorf("announced %d times, want once", n)
	}
}

// A cancel another hub announced for a job not yet delivered here is a
// tombstone: the job, delivered later, is answered cancelled and never
// offered to the free worker.
func TestCancelTombstoneAtDelivery(t *testing.T) {
	fb := newFakeCancelBroker()
	h := startHubOn(t, fb, nil)
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1"}, false)
	fb.anns <- broker.CancelRequest{HubID: "other-hub", JobID: "late-1", Reason: "elsewhere"}
	jobAck := deliver(t, &fb.fakeBroker, validJob("late-1"))
	wantCancelled(t, fb.onlyStatus(t), "late-1", "elsewhere")
	eventually(t, 5*time.Second, "delivery acked", func() bool { return jobAck.get() == "ack" })
	deliver(t, &fb.fakeBroker, validJob("next-1"))
	if got := w.expectRunJob().GetJobId(); got != "next-1" {
		t.Fatalf("first RunJob = %q, want next-1 (the cancelled job never offered)", got)
	}
	if n := fb.announcedCount(); n != 0 {
		t.Errorf("another hub's cancel was announced again %d times", n)
	}
}

// An offered job is cancelled on its worker; if the worker rejects it, it
// is answered cancelled, not offered elsewhere.
func TestCancelOfferedThenRejected(t *testing.T) {
	fb := newFakeCancelBroker()
	h := startHubOn(t, fb, nil)
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1"}, false)
	jobAck := deliver(t, &fb.fakeBroker, validJob("off-1"))
	w.expectRunJob()
	out, announced, err := h.dispatcher.cancel(context.Background(), "off-1", "admin")
	if out != cancelSentToWorker || !announced || err != nil {
		t.Fatalf("cancel() = %v, %v, %v; want sent to the worker, announced", out, announced, err)
	}
	w.next("CancelJob", func(m *blacktreev1.HubMessage) bool { return m.GetCancelJob().GetJobId() == "off-1" })
	w.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobRejected{JobRejected: &blacktreev1.JobRejected{
		JobId: "off-1", Reason: blacktreev1.RejectReason_REJECT_REASON_NO_CAPACITY}}})
	wantCancelled(t, fb.onlyStatus(t), "off-1", "admin")
	eventually(t, 5*time.Second, "delivery acked", func() bool { return jobAck.get() == "ack" })
}

// A cancel message without a valid job id is rejected without requeue.
func TestCancelUnreadableDropped(t *testing.T) {
	fb := newFakeCancelBroker()
	startHubOn(t, fb, nil)
	for _, body := range []string{`not json`, `{"reason":"no id"}`, `{"jobId":"has space"}`} {
		a := fb.sendCancel(t, body)
		eventually(t, 5*time.Second, "cancel rejected", func() bool { return a.get() == "nack-drop" })
	}
	if n := fb.announcedCount(); n != 0 {
		t.Errorf("announced %d unreadable cancels", n)
	}
}
