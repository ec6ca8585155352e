package cluster

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPrivateBrokerRestartKeepsDurableMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := StartPrivateBroker(ctx, "btcluster", t.TempDir(), 5692)
	if err != nil {
		t.Fatalf("StartPrivateBroker() = %v", err)
	}
	t.Cleanup(b.Kill)
	declareAndPublish(t, b.URL)
	if err := b.SyncMetadata(ctx); err != nil {
		t.Fatalf("SyncMetadata() = %v", err)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	if n := depth(t, b.URL, "durable.q"); n != 1 {
		t.Errorf("queue depth after restart = %d, want 1", n)
	}
}
