package bench

import (
	"context"
	"testing"
	"time"
)

// TestRunDispatchSmall runs the dispatch comparison end to end at a small
// scale: the relay and the real hub and worker binaries on a real broker,
// two rounds and the latency runs; every ledger must be clean.
func TestRunDispatchSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := testEnv(ctx, t)
	cfg := DispatchConfig{
		Jobs:         1000,
		Prefetch:     8,
		Workers:      2,
		Slots:        4,
		Rounds:       2,
		LatencyFor:   time.Second,
		LoadFraction: 0.2,
		Skip:         0.1,
	}
	res, err := RunDispatch(ctx, env, cfg, t.Logf)
	if err != nil {
		t.Fatalf("RunDispatch() = %v (is RabbitMQ running? bash scripts/ensure-rabbitmq)", err)
	}
	if len(res.Rounds) != cfg.Rounds {
		t.Fatalf("Rounds = %d, want %d", len(res.Rounds), cfg.Rounds)
	}
	for i, r := range res.Rounds {
		for name, d := range map[string]Drain{"relay": r.Baseline, "blacktree": r.Blacktree} {
			if d.JobsPerSec <= 0 || d.Account.Answered != cfg.Jobs || !d.Account.Clean() {
				t.Errorf("round %d %s: %.0f jobs/s, %s; want > 0 and %d answered, clean", i+1, name, d.JobsPerSec, d.Account, cfg.Jobs)
			}
		}
		// A short drain may take less CPU than /proc's tick: the roles
		// must be there, the machine's total above zero.
		cpu := r.Blacktree.CPUPerJob
		if _, ok := cpu["hub"]; !ok || cpu["total"] <= 0 {
			t.Errorf("round %d: Blacktree's CPU per job %v, want the hub's and a total", i+1, cpu)
		}
		if _, ok := cpu["workers"]; !ok {
			t.Errorf("round %d: Blacktree's CPU per job %v, want the workers'", i+1, cpu)
		}
	}
	for name, l := range map[string]*LatencyRun{"relay": res.BaselineLatency, "blacktree": res.BlacktreeLatency} {
		if l == nil || l.Latency.N == 0 || l.Latency.N != l.Account.Answered || !l.Account.Clean() {
			t.Errorf("%s latency = %+v, want samples for every job, clean", name, l)
		}
	}
	if bt := res.BlacktreeLatency; bt != nil && bt.ToWorker.N == 0 {
		t.Errorf("Blacktree's latency has no publish → started leg")
	}
}
