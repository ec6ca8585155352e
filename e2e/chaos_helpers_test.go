package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// chaosConfig is what a chaos run is replayed from: the seed of every
// random choice (targets, delays, intervals) and how long the load runs.
type chaosConfig struct {
	seed     uint64
	duration time.Duration
}

// defaultChaosSeed makes `make test` run the same schedule every time;
// `make chaos` passes a fresh seed.
const defaultChaosSeed = 1

// chaosConfigFromEnv reads BLACKTREE_CHAOS_SEED and
// BLACKTREE_CHAOS_DURATION (a Go duration).
func chaosConfigFromEnv(t *testing.T) chaosConfig {
	t.Helper()
	cfg := chaosConfig{seed: defaultChaosSeed, duration: 2 * time.Minute}
	if s := os.Getenv("BLACKTREE_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BLACKTREE_CHAOS_SEED=%q: %v", s, err)
		}
		cfg.seed = seed
	}
	if s := os.Getenv("BLACKTREE_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("BLACKTREE_CHAOS_DURATION=%q: want a positive Go duration (%v)", s, err)
		}
		cfg.duration = d
	}
	return cfg
}

// chaosMember is a hub or worker that the chaos loop kills and restarts
// with the same flags (and so the same addresses and state directory).
type chaosMember struct {
	name string
	bin  string
	args []string
	// readyURL is a hub's /readyz; empty for a worker, which has no
	// readiness endpoint.
	readyURL string

	// guarded by chaosFleet.mu
	proc *cluster.Process
	up   bool
	gen  int // restarts so far, named in the process name
}

// chaosEvent is one line of the kill schedule.
type chaosEvent struct {
	at     time.Duration // since the load started
	target string
	kind   string        // "kill -9" or "broker crash"
	down   time.Duration // until the target was back (0: not back)
	// overlap: other members were still down when this kill landed.
	overlap bool
}

// chaosFleet owns the members, the restart goroutines and the schedule.
type chaosFleet struct {
	e     *env
	start time.Time

	restarts sync.WaitGroup // one per pending restart

	mu       sync.Mutex // guards the members' mutable fields, e.procs after start, schedule, errs
	members  []*chaosMember
	schedule []chaosEvent
	errs     []error
}

// upMembers returns the members that are running now.
func (f *chaosFleet) upMembers() []*chaosMember {
	f.mu.Lock()
	defer f.mu.Unlock()
	var up []*chaosMember
	for _, m := range f.members {
		if m.up {
			up = append(up, m)
		}
	}
	return up
}

// logEvent appends an event to the schedule and returns its index.
func (f *chaosFleet) logEvent(target, kind string, overlap bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.schedule = append(f.schedule, chaosEvent{
		at:      time.Since(f.start),
		target:  target,
		kind:    kind,
		overlap: overlap,
	})
	return len(f.schedule) - 1
}

// back records when the target of event i was up again.
func (f *chaosFleet) back(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.schedule[i].down = time.Since(f.start) - f.schedule[i].at
}

// kill sends SIGKILL to m and restarts it after delay, in a goroutine the
// fleet waits for.
func (f *chaosFleet) kill(ctx context.Context, m *chaosMember, delay time.Duration) {
	f.mu.Lock()
	p := m.proc
	m.up = false
	overlap := false
	for _, other := range f.members {
		overlap = overlap || !other.up && other != m
	}
	f.mu.Unlock()
	i := f.logEvent(m.name, "kill -9", overlap)
	p.Kill()
	f.restarts.Add(1)
	go func() {
		defer f.restarts.Done()
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		if err := f.restart(ctx, m); err != nil {
			f.mu.Lock()
			f.errs = append(f.errs, err)
			f.mu.Unlock()
			return
		}
		f.back(i)
	}()
}

// restart starts m again with its flags and, for a hub, waits until it is
// ready. A hub that exits before it is ready (its broker is being
// restarted) is started again, for up to two minutes.
func (f *chaosFleet) restart(ctx context.Context, m *chaosMember) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		f.mu.Lock()
		m.gen++
		name := fmt.Sprintf("%s#%d", m.name, m.gen)
		f.mu.Unlock()
		p, err := cluster.Start(name, m.bin, m.args, nil, nil)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.e.procs = append(f.e.procs, p)
		f.mu.Unlock()
		if m.readyURL != "" {
			err = cluster.WaitHTTP200(ctx, m.readyURL, p)
		}
		if err == nil {
			f.mu.Lock()
			m.proc, m.up = p, true
			f.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("restart %s: %w", m.name, err)
		}
		p.Kill()
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return fmt.Errorf("restart %s: %w", m.name, ctx.Err())
		}
	}
}

// brokerCrash crashes the private broker and starts it again while the
// publisher is paused (pause held), then reconnects the control plane.
func (f *chaosFleet) brokerCrash(ctx context.Context, broker *cluster.PrivateBroker, pause *sync.Mutex) error {
	pause.Lock()
	defer pause.Unlock()
	i := f.logEvent("rabbitmq", "broker crash", false)
	if err := broker.Restart(ctx); err != nil {
		return fmt.Errorf("broker restart: %w", err)
	}
	f.back(i)
	if err := f.e.cp.Reconnect(broker.URL); err != nil {
		return fmt.Errorf("control plane after the broker restart: %w", err)
	}
	return nil
}

// scheduleText is the kill schedule, one event a line.
func (f *chaosFleet) scheduleText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, ev := range f.schedule {
		back := "not back"
		if ev.down > 0 {
			back = "back after " + ev.down.Round(10*time.Millisecond).String()
		}
		if ev.overlap {
			back += " (others still down)"
		}
		fmt.Fprintf(&b, "  +%7.2fs  %-13s %-9s %s\n", ev.at.Seconds(), ev.kind, ev.target, back)
	}
	return b.String()
}

// killCounts counts the schedule's events by kind of target, and the
// kills that landed while other members were still down.
func (f *chaosFleet) killCounts() (hubs, workers, brokers, overlaps int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range f.schedule {
		switch {
		case ev.kind == "broker crash":
			brokers++
		case strings.HasPrefix(ev.target, "hub"):
			hubs++
		default:
			workers++
		}
		if ev.overlap {
			overlaps++
		}
	}
	return hubs, workers, brokers, overlaps
}
