package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRunDispatchFloor drains a small backlog through real floor processes
// (this test binary re-executed as server and clients, see TestMain).
func TestRunDispatchFloor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := DispatchConfig{Jobs: 5000, Workers: 2, Slots: 4, Skip: 0.1}
	f, err := RunDispatchFloor(ctx, cfg, t.Logf)
	if err != nil {
		t.Fatalf("RunDispatchFloor() = %v", err)
	}
	if f.Jobs != cfg.Jobs || f.Clients != cfg.Workers || f.Slots != cfg.Slots {
		t.Errorf("RunDispatchFloor() = %d jobs, %d clients, %d slots, want %d, %d, %d", f.Jobs, f.Clients, f.Slots, cfg.Jobs, cfg.Workers, cfg.Slots)
	}
	if f.Throughput <= 0 {
		t.Errorf("Throughput = %v, want > 0", f.Throughput)
	}
	// 5000 jobs cost each side well over /proc's 10 ms tick.
	for _, role := range []string{"server", "clients"} {
		if f.CPUPerJob[role] <= 0 {
			t.Errorf("CPUPerJob[%q] = %v, want > 0", role, f.CPUPerJob[role])
		}
	}
}

func TestWriteFloorBullet(t *testing.T) {
	f := &DispatchFloor{Jobs: 20000, Clients: 4, Slots: 8, Throughput: 30000,
		CPUPerJob:      map[string]float64{"server": 20, "clients": 30, "total": 55},
		SyscallsPerJob: map[string]float64{"server": 0.4, "clients": 0.5}}
	var out strings.Builder
	writeFloorBullet(func(format string, a ...any) { fmt.Fprintf(&out, format+"\n", a...) }, f, 500)
	for _, want := range []string{"4 client processes", "8 outstanding per client", "drained 20000 jobs at 30000 jobs/s, spending **50 µs**", "server 20,", "clients 30; reads and writes per job: server 0.40, clients 0.50", "spent 10.0× that"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("writeFloorBullet() lacks %q; got:\n%s", want, out.String())
		}
	}
}

// TestRunDispatchFloorGivesUpWithContext checks that a drain that cannot
// finish in time ends with ctx, its processes killed (goleak checks the
// line reader).
func TestRunDispatchFloorGivesUpWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// Ten million jobs do not drain in 300ms.
	_, err := RunDispatchFloor(ctx, DispatchConfig{Jobs: 10_000_000, Workers: 1, Slots: 1, Skip: 0.1}, t.Logf)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunDispatchFloor() = %v, want a deadline error", err)
	}
}
