package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

func testAMQPURL() string {
	if u := os.Getenv("BLACKTREE_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// testEnv builds the hub and worker binaries into a temporary directory.
func testEnv(ctx context.Context, t *testing.T) *Env {
	t.Helper()
	env, err := NewEnv(ctx, testAMQPURL(), "..", t.TempDir(), "warn")
	if err != nil {
		t.Fatalf("NewEnv() = %v", err)
	}
	return env
}

// TestRunFleetSmall runs the fleet scenario end to end at a small scale:
// the real hub binary, a real broker, 20 fleet workers and a reference of
// 5, the hub's heartbeat interval stretched by its rate limit.
func TestRunFleetSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := testEnv(ctx, t)
	// Heartbeats every 500ms for up to 10 workers (20 a second), every
	// second for the 20: the first 10 are sent HeartbeatInterval.
	env.HubEnv = []string{"BLACKTREE_HEARTBEAT_INTERVAL=500ms", "BLACKTREE_MAX_HEARTBEAT_RATE=20"}
	cfg := FleetRunConfig{
		N:          20,
		SmallN:     5,
		Parallel:   10,
		Settle:     200 * time.Millisecond,
		IdleWindow: 3 * time.Second,
		Jobs:       50,
		Skip:       0.1,
	}
	res, err := RunFleet(ctx, env, cfg, t.Logf)
	if err != nil {
		t.Fatalf("RunFleet() = %v (is RabbitMQ running? bash scripts/ensure-rabbitmq)", err)
	}
	if res.HubListsLive != cfg.N {
		t.Errorf("HubListsLive = %d, want %d", res.HubListsLive, cfg.N)
	}
	if a := res.Account; a.Answered != cfg.Jobs || !a.Clean() {
		t.Errorf("Account = %s, want %d answered, clean", a, cfg.Jobs)
	}
	if res.JobsPerSec <= 0 || res.SmallJobsPerSec <= 0 {
		t.Errorf("JobsPerSec %v, SmallJobsPerSec %v, want both > 0", res.JobsPerSec, res.SmallJobsPerSec)
	}
	w := res.Idle
	if w.Length < cfg.IdleWindow || w.Length > cfg.IdleWindow+5*time.Second {
		t.Errorf("Idle.Length = %s, want about %s", w.Length, cfg.IdleWindow)
	}
	if w.RSSPeak <= 0 || w.Heartbeats == 0 {
		t.Errorf("Idle = %+v, want an RSS peak and heartbeats", w)
	}
	if res.GoroutinesPerWorker <= 0 {
		t.Errorf("GoroutinesPerWorker = %v, want > 0", res.GoroutinesPerWorker)
	}
	if st := res.Stats; st.Interval != time.Second || st.IntervalUpdates != 10 {
		t.Errorf("Stats() interval %s after %d HeartbeatInterval frames, want 1s after 10", st.Interval, st.IntervalUpdates)
	}
}
