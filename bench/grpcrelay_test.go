package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestGRPCRelay drains backlogs through the relay and the gRPC relay, in
// alternating pairs, with a real broker and floor client processes (this
// test binary re-executed, see TestMain): every job is answered once on
// both sides, and the clients are charged as workers.
func TestGRPCRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := &Env{AMQPURL: testAMQPURL(), Dir: t.TempDir(), WorkerToken: "wt-test"}
	cfg := DispatchConfig{Jobs: 500, Prefetch: 8, Workers: 2, Slots: 4, Skip: 0.1}
	pairs, err := RunGRPCRelay(ctx, env, cfg, 2, t.Logf)
	if err != nil {
		t.Fatalf("RunGRPCRelay() = %v (is RabbitMQ running? bash ../shared/scripts/ensure-rabbitmq)", err)
	}
	if len(pairs) != 2 {
		t.Fatalf("RunGRPCRelay() = %d pairs, want 2", len(pairs))
	}
	for i, p := range pairs {
		for _, s := range []SideResult{p.Relay, p.GRPCRelay} {
			if a := s.DrainAccount; a.Answered != cfg.Jobs || !a.Clean() {
				t.Errorf("pair %d: %s DrainAccount = %s, want %d answered, clean", i, s.Name, a, cfg.Jobs)
			}
		}
		if _, ok := p.GRPCRelay.DrainCPU["workers"]; !ok {
			t.Errorf("pair %d: gRPC relay DrainCPU = %v, want a workers role", i, p.GRPCRelay.DrainCPU)
		}
		if p.Ratio() <= 0 {
			t.Errorf("pair %d: Ratio() = %v, want > 0", i, p.Ratio())
		}
	}
}

// testGRPCRelay starts a gRPC relay with a window of 4 on fresh queues,
// deleted when the test ends; the test stops the relay.
func testGRPCRelay(t *testing.T) *GRPCRelay {
	t.Helper()
	q := NewQueues("btbench-test")
	if err := q.Declare(testAMQPURL()); err != nil {
		t.Fatalf("Declare() = %v (is RabbitMQ running? bash ../shared/scripts/ensure-rabbitmq)", err)
	}
	t.Cleanup(func() { _ = q.Delete(testAMQPURL()) })
	r, err := StartGRPCRelay(testAMQPURL(), q, 4)
	if err != nil {
		t.Fatalf("StartGRPCRelay() = %v", err)
	}
	return r
}

// TestGRPCRelayStopIdempotent starts a relay that no client joins and stops
// it twice.
func TestGRPCRelayStopIdempotent(t *testing.T) {
	r := testGRPCRelay(t)
	for i := range 2 {
		if err := r.Stop(); err != nil {
			t.Errorf("Stop() #%d = %v, want nil", i+1, err)
		}
	}
}

func TestWriteGRPCRelayBullet(t *testing.T) {
	pair := func(relay, grpc float64) GRPCRelayPair {
		return GRPCRelayPair{Relay: SideResult{Throughput: relay},
			GRPCRelay: SideResult{Throughput: grpc, DrainCPU: map[string]float64{"btbench": 0.5, "workers": 0.25, "broker": 0.5}}}
	}
	tests := []struct {
		name      string
		pairs     []GRPCRelayPair
		want      []string
		wantBelow bool
	}{
		{name: "below the target", pairs: []GRPCRelayPair{pair(10000, 6000), pair(10000, 7000), pair(10000, 5000)},
			want: []string{"**0.60×** the relay (the median of 0.60×, 0.70×, 0.50×)", "First pair: 6000 against 10000 jobs/s",
				"btbench (load generator, collector and this relay) 83 µs, clients 42 µs, broker 83 µs"}, wantBelow: true},
		{name: "at the target", pairs: []GRPCRelayPair{pair(5000, 4500)}, want: []string{"**0.90×** the relay (one pair)."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			writeGRPCRelayBullet(func(format string, a ...any) { fmt.Fprintf(&out, format+"\n", a...) }, tt.pairs)
			for _, want := range tt.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("writeGRPCRelayBullet() lacks %q; got:\n%s", want, out.String())
				}
			}
			if got := strings.Contains(out.String(), "Its median is below 0.8× too"); got != tt.wantBelow {
				t.Errorf("writeGRPCRelayBullet() says below the target: %v, want %v; got:\n%s", got, tt.wantBelow, out.String())
			}
		})
	}
}

// TestGRPCRelayReportsMisbehavingClient: a client that registers more slots
// than the relay hands out ends its stream, and Stop names the failure
// instead of leaving a drain to time out without a reason.
func TestGRPCRelayReportsMisbehavingClient(t *testing.T) {
	r := testGRPCRelay(t)
	f := StartFleet(FleetConfig{Addr: r.Addr, N: 1, Prefix: "too-many-slots", Slots: maxRelaySlots + 1, AgentTransport: true})
	defer f.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for failed := false; !failed; {
		select {
		case <-tick.C:
			r.mu.Lock()
			failed = r.err != nil
			r.mu.Unlock()
		case <-deadline:
			t.Fatal("the relay recorded no failure within 10s of a client registering too many slots")
		}
	}
	if err := r.Stop(); err == nil || !strings.Contains(err.Error(), "registered more than the 4096 slots") {
		t.Errorf("Stop() = %v, want the too-many-slots failure", err)
	}
}
