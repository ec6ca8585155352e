package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func testAMQPURL() string {
	if u := os.Getenv("BLACKTREE_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// TestRunFleetSmall runs the fleet scenario end to end at a small scale:
// the real hub binary, a real broker, 20 fleet workers. It checks the
// idle window's bounds and that the report judges memory on the window's
// peak.
func TestRunFleetSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := NewEnv(ctx, testAMQPURL(), "..", t.TempDir(), "warn")
	if err != nil {
		t.Fatalf("NewEnv() = %v", err)
	}
	// Heartbeats every 500ms for up to 10 workers (20 a second), every
	// second for the 20: the first 10 are sent HeartbeatInterval.
	env.HubEnv = []string{"GOGC=50", "BLACKTREE_HEARTBEAT_INTERVAL=500ms", "BLACKTREE_MAX_HEARTBEAT_RATE=20"}
	cfg := FleetRunConfig{N: 20, Parallel: 10, Settle: 200 * time.Millisecond, IdleWindow: 2 * time.Second,
		SteadyGCs: 1000, SteadyMax: 3 * time.Second, Jobs: 50, Skip: 0.1, BusySlots: 3, BusyHold: 2}
	res, err := RunFleet(ctx, env, cfg, t.Logf)
	if err != nil {
		t.Fatalf("RunFleet() = %v (is RabbitMQ running? bash ../shared/scripts/ensure-rabbitmq)", err)
	}
	if res.HubListsLive != cfg.N {
		t.Errorf("HubListsLive = %d, want %d", res.HubListsLive, cfg.N)
	}
	if a := res.DispatchAccount; a.Answered != cfg.Jobs || !a.Clean() {
		t.Errorf("DispatchAccount = %s, want %d answered, clean", a, cfg.Jobs)
	}
	// The partly busy fleet: every worker kept 2 jobs and still took the
	// timed dispatch, each job once.
	if b := res.Busy; b == nil || b.Held != 2*cfg.N || b.HoldRate <= 0 || b.Account.Answered != cfg.Jobs || !b.Account.Clean() {
		t.Errorf("Busy = %+v, want %d held jobs placed, then %d answered, clean", b, 2*cfg.N, cfg.Jobs)
	}
	w := res.Idle
	// 1000 GCs never come: the window ends at SteadyMax, not before.
	if w.Length < cfg.SteadyMax || w.Length > cfg.SteadyMax+5*time.Second {
		t.Errorf("Idle.Length = %s, want about SteadyMax %s", w.Length, cfg.SteadyMax)
	}
	if w.SteadyGCsReached {
		t.Errorf("Idle.SteadyGCsReached = true after %d GCs, want false", w.GCs)
	}
	if w.RSSEnd <= 0 || w.RSSPeak < w.RSSEnd {
		t.Errorf("Idle RSS peak %d, end %d, want peak >= end > 0", w.RSSPeak, w.RSSEnd)
	}
	// 20 workers' CPU over 3s may be below /proc's 10ms tick: not checked.
	if res.Idle.Heartbeats == 0 {
		t.Errorf("Idle.Heartbeats = 0, want some")
	}
	if st := res.Stats; st.Interval != time.Second || st.IntervalUpdates != 10 {
		t.Errorf("Stats() interval %s after %d HeartbeatInterval frames, want 1s after 10", st.Interval, st.IntervalUpdates)
	}
	if d, _, err := hubHeartbeats(env.HubEnv, cfg.N); d != time.Second || err != nil {
		t.Errorf("hubHeartbeats(%q, %d) = %s, %v; want 1s (what the floor server is given)", env.HubEnv, cfg.N, d, err)
	}

	var b strings.Builder
	(&Report{HubEnv: env.HubEnv, Fleet: res}).WriteMarkdown(&b)
	for _, want := range []string{"- hub environment: `GOGC=50 ", "the fleet (10 HeartbeatInterval frames while it grew; `--max-heartbeat-rate`, G25) | 1s |", "fewer than the 1000 asked for", "peak in the idle window",
		"20 workers of 3 slots, each keeping 2 jobs running", "placing the 40 jobs those workers keep"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteMarkdown() lacks %q", want)
		}
	}
}

func TestFleetVerdictOnPeak(t *testing.T) {
	const kib = 1024
	tests := []struct {
		name      string
		peak, end int64 // per worker, KiB
		want      string
	}{
		{name: "settled low, peak high", peak: 40, end: 30, want: "peak in the idle window** | 40.0 KiB | ≤ 32 KiB | **missed**"},
		{name: "peak within", peak: 31, end: 30, want: "peak in the idle window** | 31.0 KiB | ≤ 32 KiB | **met**"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &FleetResult{Config: FleetRunConfig{N: 1000, SteadyGCs: 2}, RSSBefore: 10 << 20, RSSAfter: 10<<20 + 1000*30*kib,
				Idle: IdleWindowResult{GCs: 2, SteadyGCsReached: true, RSSPeak: 10<<20 + 1000*tt.peak*kib, RSSEnd: 10<<20 + 1000*tt.end*kib}}
			f.RSSPerWorker = 30 * kib
			var b strings.Builder
			(&Report{Fleet: f}).WriteMarkdown(&b)
			if !strings.Contains(b.String(), tt.want) {
				t.Errorf("WriteMarkdown() lacks %q; got:\n%s", tt.want, b.String())
			}
		})
	}
}

// TestFleetCPUPerHeartbeat checks the heartbeat CPU rows against the bare
// grpc-go server: CPU × window / heartbeats for each, and their ratio.
func TestFleetCPUPerHeartbeat(t *testing.T) {
	f := &FleetResult{Config: FleetRunConfig{N: 1000, SteadyGCs: 2}, IdleCPU: 0.15,
		Idle:  IdleWindowResult{Length: 100 * time.Second, CPU: 0.15, Heartbeats: 300_000},
		Floor: &FloorResult{N: 1000, Idle: IdleWindowResult{Length: 120 * time.Second, CPU: 0.12, Heartbeats: 240_000}}}
	if got, want := f.Idle.CPUPerHeartbeat(), 50*time.Microsecond; got != want {
		t.Errorf("Idle.CPUPerHeartbeat() = %s, want %s", got, want)
	}
	if got := (IdleWindowResult{CPU: 0.5, Length: time.Second}).CPUPerHeartbeat(); got != 0 {
		t.Errorf("CPUPerHeartbeat() with no heartbeats = %s, want 0", got)
	}
	var b strings.Builder
	(&Report{Fleet: f}).WriteMarkdown(&b)
	for _, want := range []string{
		"| same fleet on the bare grpc-go server, CPU in its idle window (240000 heartbeats) | 12.00% of a core |",
		"hub / bare grpc-go server | 50.0 / 60.0 µs = 0.83× |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteMarkdown() lacks %q; got:\n%s", want, b.String())
		}
	}
}
