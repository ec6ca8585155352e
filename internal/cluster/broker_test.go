package cluster

import (
	"context"
	"os"
	"path/filepath"
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

// A node that cannot boot (here: its name is taken by a running node)
// fails StartPrivateBroker and leaves its Erlang crash dump in its own
// directory, never in the test's working directory (the source tree).
func TestPrivateBrokerBootFailureKeepsItsCrashDump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := StartPrivateBroker(ctx, "btclash", t.TempDir(), 5694)
	if err != nil {
		t.Fatalf("StartPrivateBroker() = %v", err)
	}
	t.Cleanup(a.Kill)
	dir := t.TempDir()
	b, err := StartPrivateBroker(ctx, "btclash", dir, 5696)
	if err == nil {
		b.Kill()
		t.Fatal("StartPrivateBroker() with a node name in use = nil error, want the boot failure")
	}
	if _, err := os.Stat(filepath.Join(dir, "erl_crash.dump")); err != nil {
		t.Errorf("crash dump in the node's directory: %v, want it there", err)
	}
	if _, err := os.Stat("erl_crash.dump"); err == nil {
		t.Errorf("erl_crash.dump written to the working directory, want it in the node's")
	}
}
