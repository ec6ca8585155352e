package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// Chaos run parameters: the load, the fault rhythm and the hubs' failure
// detection. docs/design/chaos.md explains the choices.
const (
	chaosRate          = 40 // jobs published a second
	chaosGrace         = 3 * time.Second
	chaosHeartbeat     = time.Second
	chaosMinInterval   = 2 * time.Second // between two faults
	chaosMaxInterval   = 4 * time.Second
	chaosMinDown       = 200 * time.Millisecond // a killed process is restarted after
	chaosMaxDown       = 3 * time.Second
	chaosBrokerEvery   = 5 * time.Minute // one broker crash per this much load, at least one
	chaosSettleTimeout = 2 * time.Minute // for the last statuses once the load stopped
)

// TestChaos: two hubs on the same queues and three noop workers that know
// both; steady load; every 2–4 s a random hub or worker gets kill -9 and
// comes back with the same flags and state directory after a short random
// delay; the broker (a private node) crashes and restarts at least once.
// After the load stops and the fleet settles, every published job has at
// least one status and no status names a job that was never published.
//
// BLACKTREE_CHAOS_SEED replays a run's choices; BLACKTREE_CHAOS_DURATION
// sets the load's length (`make chaos` runs 15 minutes).
func TestChaos(t *testing.T) {
	cfg := chaosConfigFromEnv(t)
	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed))
	t.Logf("chaos: seed %d (replay with BLACKTREE_CHAOS_SEED=%d), load for %s", cfg.seed, cfg.seed, cfg.duration)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration+10*time.Minute)
	defer cancel()

	port, err := cluster.FreePortBase(0, cluster.PrivateBrokerDistOffset)
	if err != nil {
		t.Fatalf("FreePortBase() = %v", err)
	}
	broker, err := cluster.StartPrivateBroker(ctx, fmt.Sprintf("btchaos%d", port), t.TempDir(), port)
	if err != nil {
		t.Fatalf("StartPrivateBroker() = %v (is rabbitmq-server installed? scripts/ensure-rabbitmq)", err)
	}
	t.Cleanup(broker.Kill)
	e := newEnv(t, broker.URL)
	hubFlags := []string{"--lost-worker-grace", chaosGrace.String(), "--heartbeat-interval", chaosHeartbeat.String()}
	hubA, hubB := e.startHub(hubFlags...), e.startHub(hubFlags...)
	// Have the queues on disk before the first crash (see SyncMetadata).
	if err := broker.SyncMetadata(ctx); err != nil {
		t.Fatalf("SyncMetadata() = %v", err)
	}
	f := &chaosFleet{e: e}
	for _, h := range []struct {
		name string
		hub  *hubProc
	}{{"hub-a", hubA}, {"hub-b", hubB}} {
		f.members = append(f.members, &chaosMember{
			name:     h.name,
			bin:      bins.Hub,
			args:     h.hub.args,
			readyURL: "http://" + h.hub.HTTPAddr + "/readyz",
			proc:     h.hub.Process,
			up:       true,
		})
	}
	ab, ba := []string{hubA.GRPCAddr, hubB.GRPCAddr}, []string{hubB.GRPCAddr, hubA.GRPCAddr}
	for _, w := range []struct {
		name  string
		hubs  []string
		delay string
		slots string
	}{
		{"fast-1", ab, "20ms", "8"},
		{"fast-2", ba, "50ms", "8"},
		// Long jobs, so that kills land mid-job.
		{"slow", ab, "2s", "4"},
	} {
		p := e.startWorker(w.name, w.hubs, "--executor", "noop", "--noop-delay", w.delay, "--slots", w.slots)
		f.members = append(f.members, &chaosMember{name: w.name, bin: bins.Worker, args: p.Args, proc: p, up: true})
	}
	e.waitWorkers(hubA, 2, 30*time.Second)
	e.waitWorkers(hubB, 1, 30*time.Second)

	// The load: chaosRate jobs a second, paused while the broker restarts.
	var (
		pause       sync.Mutex // held by a publish, and by a broker restart
		pubMu       sync.Mutex // guards published, publishedAt, unconfirmed
		published   []string
		publishedAt = map[string]time.Time{}
		unconfirmed []string
		load        sync.WaitGroup
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer func() { // on every path: nothing outlives the test
		stopLoad()
		load.Wait()
		f.restarts.Wait()
	}()
	f.start = time.Now()
	load.Add(1)
	go func() {
		defer load.Done()
		for n := 0; ; n++ {
			next := f.start.Add(time.Duration(n) * time.Second / chaosRate)
			select {
			case <-loadCtx.Done():
				return
			case <-time.After(time.Until(next)):
			}
			id := fmt.Sprintf("chaos-%06d", n)
			pause.Lock()
			at := time.Now()
			pctx, pcancel := context.WithTimeout(loadCtx, 30*time.Second)
			err := e.cp.Publish(pctx, job(id))
			pcancel()
			pause.Unlock()
			pubMu.Lock()
			if err != nil {
				unconfirmed = append(unconfirmed, id)
			} else {
				published = append(published, id)
				publishedAt[id] = at
			}
			pubMu.Unlock()
		}
	}()

	// The faults.
	brokerCrashes := max(1, int(cfg.duration/chaosBrokerEvery))
	var brokerAt []time.Duration
	for i := range brokerCrashes {
		slot := cfg.duration / time.Duration(brokerCrashes)
		brokerAt = append(brokerAt, time.Duration(i)*slot+slot/4+time.Duration(rng.Int64N(int64(slot/2))))
	}
	var brokerErr error
	for time.Since(f.start) < cfg.duration && brokerErr == nil {
		wait := chaosMinInterval + time.Duration(rng.Int64N(int64(chaosMaxInterval-chaosMinInterval)))
		select {
		case <-ctx.Done():
			t.Fatalf("chaos loop: %v", ctx.Err())
		case <-time.After(wait):
		}
		if len(brokerAt) > 0 && time.Since(f.start) >= brokerAt[0] {
			brokerAt = brokerAt[1:]
			brokerErr = f.brokerCrash(ctx, broker, &pause)
			continue
		}
		up := f.upMembers()
		// Draw both numbers whatever is up, so that a replay makes the same
		// draws in the same order.
		pick, down := rng.IntN(len(f.members)), chaosMinDown+time.Duration(rng.Int64N(int64(chaosMaxDown-chaosMinDown)))
		if len(up) == 0 {
			continue
		}
		f.kill(ctx, up[pick%len(up)], down)
	}
	stopLoad()
	load.Wait()
	loadFor := time.Since(f.start)
	f.restarts.Wait()
	if brokerErr != nil {
		t.Fatal(brokerErr)
	}
	for _, err := range f.errs {
		t.Errorf("restart: %v", err)
	}

	// Settle: every job gets its status within the grace period, the
	// failure detection and the requeue of held deliveries, plus margin.
	settleStart := time.Now()
	sctx, scancel := context.WithTimeout(ctx, chaosSettleTimeout)
	_, settleErr := e.cp.WaitFor(sctx, published...)
	scancel()
	settled := time.Since(settleStart)

	l := e.cp.Ledger(published)
	var worst time.Duration
	var worstID string
	failures := map[string]int{}
	succeeded := 0
	for _, id := range published {
		at, ok := e.cp.FirstStatusAt(id)
		if !ok {
			continue
		}
		if d := at.Sub(publishedAt[id]); d > worst {
			worst, worstID = d, id
		}
		if s := e.cp.Statuses(id)[0]; s.GetSuccess() {
			succeeded++
		} else {
			failures[failureKind(s.GetError())]++
		}
	}
	hubs, workers, brokers, overlaps := f.killCounts()
	statuses := len(e.cp.Bodies())
	t.Logf("chaos: kill schedule (seed %d):\n%s", cfg.seed, f.scheduleText())
	t.Logf("chaos: first statuses that were failures, by kind: %v", failures)
	if len(unconfirmed) > 0 {
		t.Logf("chaos: %d publishes unconfirmed (not counted): %v", len(unconfirmed), unconfirmed[:min(len(unconfirmed), 10)])
	}
	record(t, "seed %d, %s of load, %d kills (hub %d, worker %d; %d while others were down), broker crashes %d: jobs %d, statuses %d, %s, succeeded %d, worst publish→status %s (%s), settled in %s",
		cfg.seed, loadFor.Round(time.Second), hubs+workers, hubs, workers, overlaps, brokers,
		len(published), statuses, l, succeeded, worst.Round(time.Millisecond), worstID, settled.Round(time.Millisecond))

	if l.Lost != 0 || l.Unexpected != 0 || l.Undecodable != 0 {
		t.Errorf("Ledger() = %s, want lost=0 unexpected=0 undecodable=0; jobs without a status: %v (%v)%s%s",
			l, l.LostIDs[:min(len(l.LostIDs), 20)], settleErr, e.diagnose(hubA), e.diagnose(hubB))
	}
	if brokers == 0 {
		t.Errorf("no broker crash in %s of load, want at least one", loadFor)
	}
}

// failureKind shortens a failed status's error to its kind for the report:
// the text before the first colon, with worker ids and job ids dropped.
func failureKind(msg string) string {
	kind, _, _ := strings.Cut(msg, ":")
	var words []string
	for _, w := range strings.Fields(kind) {
		if len(w) >= 16 || strings.HasPrefix(w, "chaos-") {
			w = "<id>"
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}
