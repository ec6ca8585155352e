package rabbit

import (
	"context"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/broker"
)

// receiveLedger returns the next ledger delivery of either client, and
// which one got it, or fails after timeout.
func receiveLedger(t *testing.T, a, b *Client, timeout time.Duration) (broker.LedgerDelivery, *Client) {
	t.Helper()
	select {
	case d := <-a.LedgerDeliveries():
		return d, a
	case d := <-b.LedgerDeliveries():
		return d, b
	case <-time.After(timeout):
		t.Fatalf("no ledger delivery within %v", timeout)
	}
	panic("unreachable")
}

// TestLedgerSingleActiveConsumerHandsOver: of two Clients on one ledger
// queue, one receives an event; while it holds the event unacked, the other
// gets nothing; when the holder's ledger connection dies, the event is
// delivered again, on a new session, and once acked it is gone.
func TestLedgerSingleActiveConsumerHandsOver(t *testing.T) {
	e := newEnv(t, nil)
	a := e.start(t)
	b := startAnother(t, e, "b", testLogger(t))
	if !a.LedgerEnabled() || a.Config().LedgerQueue != e.cfg.ExecuteQueue+LedgerSuffix {
		t.Fatalf("ledger queue = %q, enabled %v; want %q by default", a.Config().LedgerQueue, a.LedgerEnabled(), e.cfg.ExecuteQueue+LedgerSuffix)
	}
	waitFor(t, "both ledger consumers up", 10*time.Second, func() bool {
		return a.LedgerSession() != 0 && b.LedgerSession() != 0
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := a.PublishLedger(ctx, broker.Message{Body: []byte(`{"kind":"alive"}`), MessageID: "e1"}); err != nil {
		t.Fatalf("PublishLedger() = %v", err)
	}
	d, holder := receiveLedger(t, a, b, 5*time.Second)
	if d.MessageID != "e1" || d.Session != holder.LedgerSession() {
		t.Fatalf("got %q on session %d (live %d), want e1 on the live session", d.MessageID, d.Session, holder.LedgerSession())
	}
	other, name := b, e.cfg.ConnectionName
	if holder == b {
		other = a
		name += "-b"
	}
	select {
	case d := <-other.LedgerDeliveries():
		t.Fatalf("the inactive consumer got %q", d.MessageID)
	case <-time.After(300 * time.Millisecond):
	}

	old := d.Session
	killConnection(t, name+"-ledger")
	d2, holder2 := receiveLedger(t, a, b, 10*time.Second)
	if d2.MessageID != "e1" || !d2.Redelivered {
		t.Fatalf("after the holder's connection died got %q (redelivered %v), want e1 again", d2.MessageID, d2.Redelivered)
	}
	if holder2 == holder && d2.Session == old {
		t.Fatalf("redelivery came on the dead session %d", old)
	}
	if err := d.Ack(); err == nil {
		t.Errorf("Ack() of the dead session's delivery = nil, want an error")
	}
	if err := d2.Ack(); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	select {
	case d := <-a.LedgerDeliveries():
		t.Fatalf("an acked event came back: %q", d.MessageID)
	case d := <-b.LedgerDeliveries():
		t.Fatalf("an acked event came back: %q", d.MessageID)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestLedgerDisabled: DisableLedger declares and consumes nothing.
func TestLedgerDisabled(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DisableLedger = true })
	c := e.start(t)
	if c.LedgerEnabled() || c.Config().LedgerQueue != "" {
		t.Fatalf("LedgerEnabled() = %v, LedgerQueue %q; want off", c.LedgerEnabled(), c.Config().LedgerQueue)
	}
	if err := c.PublishLedger(t.Context(), broker.Message{Body: []byte("{}")}); err == nil {
		t.Errorf("PublishLedger() with the ledger off = nil, want an error")
	}
}
