package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunDispatchFloor drains a small backlog through real floor processes
// (this test binary re-executed as server and clients, see TestMain),
// unpaced and paced.
func TestRunDispatchFloor(t *testing.T) {
	tests := []struct {
		name  string
		jobs  int
		rate  float64
		burst string // floorBurstEnv
	}{
		{name: "unpaced", jobs: 5000},
		{name: "paced", jobs: 3000, rate: 2000},
		{name: "paced in bursts", jobs: 3000, rate: 2000, burst: "8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(floorBurstEnv, tt.burst) // RunDispatchFloor reads it
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cfg := DispatchConfig{Jobs: tt.jobs, Workers: 2, Slots: 4, Skip: 0.1}
			f, err := RunDispatchFloor(ctx, cfg, tt.rate, t.Logf)
			if err != nil {
				t.Fatalf("RunDispatchFloor() = %v", err)
			}
			if want, _ := strconv.Atoi(tt.burst); f.Burst != want {
				t.Errorf("Burst = %d, want %d", f.Burst, want)
			}
			if f.Jobs != cfg.Jobs || f.Clients != cfg.Workers || f.Slots != cfg.Slots || f.Rate != tt.rate {
				t.Errorf("RunDispatchFloor() = %d jobs, %d clients, %d slots at %v, want %d, %d, %d at %v",
					f.Jobs, f.Clients, f.Slots, f.Rate, cfg.Jobs, cfg.Workers, cfg.Slots, tt.rate)
			}
			if f.Throughput <= 0 {
				t.Errorf("Throughput = %v, want > 0", f.Throughput)
			}
			// Paced, jobs are never handed out ahead of their turn.
			if tt.rate > 0 && f.Throughput > 1.2*tt.rate {
				t.Errorf("Throughput = %.0f jobs/s, paced at %.0f: want at most 1.2× the pace", f.Throughput, tt.rate)
			}
			// Thousands of jobs cost each side well over /proc's 10 ms tick.
			for _, role := range []string{"server", "clients"} {
				if f.CPUPerJob[role] <= 0 {
					t.Errorf("CPUPerJob[%q] = %v, want > 0", role, f.CPUPerJob[role])
				}
			}
		})
	}
}

func TestWriteFloorBullet(t *testing.T) {
	f := &DispatchFloor{Jobs: 20000, Clients: 4, Slots: 8, Throughput: 30000,
		CPUPerJob:      map[string]float64{"server": 20, "clients": 30, "total": 55},
		SyscallsPerJob: map[string]float64{"server": 0.4, "clients": 0.5}}
	at := &DispatchFloor{Jobs: 20000, Clients: 4, Slots: 8, Rate: 2500, Throughput: 2500,
		CPUPerJob:      map[string]float64{"server": 60, "clients": 140},
		SyscallsPerJob: map[string]float64{"server": 1.5, "clients": 2}}
	tests := []struct {
		name string
		at   *DispatchFloor
		want []string
	}{
		{name: "unpaced only", want: []string{"4 client processes", "8 outstanding per client",
			"drained 20000 jobs at 30000 jobs/s, spending **50 µs**", "server 20,",
			"clients 30; reads and writes per job: server 0.40, clients 0.50", "spent 10.0× that."}},
		{name: "paced in bursts", at: &DispatchFloor{Rate: 2500, Burst: 32, CPUPerJob: map[string]float64{"server": 40, "clients": 60}, SyscallsPerJob: map[string]float64{}},
			want: []string{"at Blacktree's own rate (2500 jobs/s, handed out 32 at a time) it spent **100 µs** per job"}},
		{name: "paced too", at: at, want: []string{"at Blacktree's own rate (2500 jobs/s) it spent **200 µs** per job (server 60,",
			"clients 140; reads and writes per job: server 1.50, clients 2.00", "spent 2.5× that (10.0× the unpaced floor)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			writeFloorBullet(func(format string, a ...any) { fmt.Fprintf(&out, format+"\n", a...) }, f, tt.at, 500)
			for _, want := range tt.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("writeFloorBullet() lacks %q; got:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestRunDispatchFloorGivesUpWithContext checks that a drain that cannot
// finish in time ends with ctx, its processes killed (goleak checks the
// line reader), whichever stage the deadline falls in: starting the
// processes, waiting for the clients to register, or draining.
func TestRunDispatchFloorGivesUpWithContext(t *testing.T) {
	var timeouts []time.Duration // every 15ms up to 300ms: each stage gets some
	for d := 15 * time.Millisecond; d <= 300*time.Millisecond; d += 15 * time.Millisecond {
		timeouts = append(timeouts, d)
	}
	for _, timeout := range timeouts {
		t.Run(timeout.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			// Ten million jobs do not drain in 300ms.
			_, err := RunDispatchFloor(ctx, DispatchConfig{Jobs: 10_000_000, Workers: 2, Slots: 1, Skip: 0.1}, 0, t.Logf)
			if err == nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("RunDispatchFloor() = %v, want a deadline error", err)
			}
		})
	}
}

// TestHubWithFloorClients drains a backlog through the real hub binary and
// a real broker with the floor's clients as the hub's workers: the clients
// speak enough of the protocol (token, Register, heartbeats, JobAccepted,
// JobResult) that every job is answered once.
func TestHubWithFloorClients(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := NewEnv(ctx, testAMQPURL(), "..", t.TempDir(), "warn")
	if err != nil {
		t.Fatalf("NewEnv() = %v", err)
	}
	cfg := DispatchConfig{Jobs: 500, Prefetch: 8, Workers: 2, Slots: 4, Skip: 0.1}
	s, _, _, err := startBlacktree(ctx, env, cfg, btSpec{name: "hub, floor clients", prefix: "test-hf",
		workers: cfg.Workers, slots: cfg.Slots, floorClients: true}, t.Logf)
	if err != nil {
		t.Fatalf("startBlacktree() = %v (is RabbitMQ running? bash ../shared/scripts/ensure-rabbitmq)", err)
	}
	s.stop()
	if a := s.res.DrainAccount; a.Answered != cfg.Jobs || !a.Clean() {
		t.Errorf("DrainAccount = %s, want %d answered, clean", a, cfg.Jobs)
	}
	if len(s.roles["workers"]) != cfg.Workers {
		t.Errorf("roles[workers] = %v, want %d floor clients", s.roles["workers"], cfg.Workers)
	}
	var out strings.Builder
	writeHubFloorBullet(func(format string, a ...any) { fmt.Fprintf(&out, format+"\n", a...) }, &s.res, 2*s.res.Throughput)
	if want := "= 0.50× the baseline"; !strings.Contains(out.String(), want) {
		t.Errorf("writeHubFloorBullet() lacks %q; got:\n%s", want, out.String())
	}
}

func TestRatioBound(t *testing.T) {
	// The baseline: 5000 jobs/s with 2 cores 75% busy = 300 µs per job.
	base := SideResult{Throughput: 5000, DrainMachineBusy: 0.75}
	if bound, needed := ratioBound(base, 100, 2); math.Abs(bound-1.0) > 1e-9 || math.Abs(needed-400) > 1e-9 {
		t.Errorf("ratioBound(100 µs) = %v, %v, want 1, 400", bound, needed)
	}
	floor := func(perJob float64) *DispatchFloor {
		return &DispatchFloor{Rate: 4000, CPUPerJob: map[string]float64{"server": perJob / 2, "clients": perJob / 2}}
	}
	tests := []struct {
		name          string
		cheap, paced  float64 // the floors' CPU per job
		want, notWant string
	}{
		{name: "within reach", cheap: 50, paced: 100, want: "within reach of a design at the floor", notWant: "only"},
		{name: "only near the floor", cheap: 50, paced: 300, want: "within reach only of a design whose frames cost close to"},
		{name: "out of reach", cheap: 300, paced: 400, want: "**The 0.8× target is out of reach"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			writeBoundBullet(func(format string, a ...any) { fmt.Fprintf(&out, format+"\n", a...) }, base, floor(tt.cheap), floor(tt.paced), 2)
			if !strings.Contains(out.String(), tt.want) || (tt.notWant != "" && strings.Contains(out.String(), tt.notWant)) {
				t.Errorf("writeBoundBullet() = %q, want %q (and not %q)", out.String(), tt.want, tt.notWant)
			}
			if !strings.Contains(out.String(), "the baseline's own work is 300 µs per job") {
				t.Errorf("writeBoundBullet() = %q, want the baseline's 300 µs named", out.String())
			}
		})
	}
}
