package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// FleetRunConfig configures the fleet-scale scenario.
type FleetRunConfig struct {
	// N workers connect, each on its own gRPC connection.
	N int
	// SmallN workers, on a hub of their own, take the same dispatch
	// first: the same-run reference for the big fleet's rate (0: skip).
	SmallN int
	// Parallel bounds concurrent registrations.
	Parallel int
	// Settle is how long to wait after the last registration before
	// reading the hub's RSS.
	Settle time.Duration
	// IdleWindow is how long the hub's CPU and RSS are followed while the
	// fleet only heartbeats: at least one heartbeat interval, better three.
	IdleWindow time.Duration
	// Jobs are dispatched with the fleet connected.
	Jobs int
	// Skip is the warm-up fraction dropped from throughput.
	Skip float64
}

// DefaultFleetRunConfig is what `make bench` runs.
func DefaultFleetRunConfig() FleetRunConfig {
	return FleetRunConfig{
		N:          10000,
		SmallN:     100,
		Parallel:   200,
		Settle:     5 * time.Second,
		IdleWindow: 30 * time.Second,
		Jobs:       5000,
		Skip:       0.1,
	}
}

// IdleWindow is what the hub did while the fleet only heartbeated.
type IdleWindow struct {
	Length time.Duration
	// CPU is the hub's CPU over the window, a fraction of one core.
	CPU float64
	// Heartbeats the fleet sent in the window; GCs the hub ran in it.
	Heartbeats int64
	GCs        int
	// RSSPeak is the hub's largest RSS, sampled every second.
	RSSPeak int64
}

// FleetResult is the fleet-scale scenario's outcome.
type FleetResult struct {
	Config  FleetRunConfig
	HubArgs []string
	// RegisterAll is from the first dial to the last Registered.
	RegisterAll  time.Duration
	HubListsLive int
	// RSSBefore is the hub's RSS before the fleet connected, RSSAfter
	// Config.Settle after the last registration.
	RSSBefore int64
	RSSAfter  int64
	// GoroutinesPerWorker is the growth of the hub's go_goroutines per
	// worker.
	GoroutinesPerWorker float64
	// IdleCPUNoWorkers is the hub's CPU with no worker, a fraction of one
	// core.
	IdleCPUNoWorkers float64
	Idle             IdleWindow
	// Stats are the fleet's counters at the end: the heartbeat interval
	// and grid the hub gave it among them.
	Stats FleetStats
	// JobsPerSec is the dispatch with the fleet connected, SmallJobsPerSec
	// the same with Config.SmallN workers.
	JobsPerSec      float64
	SmallJobsPerSec float64
	Account         Account
}

// perWorker is the RSS growth from before to rss, per one of n workers.
func perWorker(rss, before int64, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(rss-before) / float64(n)
}

// RSSPerWorker is the hub's RSS growth per worker Config.Settle after the
// last registration, in bytes.
func (f *FleetResult) RSSPerWorker() float64 { return perWorker(f.RSSAfter, f.RSSBefore, f.Config.N) }

// PeakPerWorker is the same at the idle window's peak: the heap grows with
// heartbeat garbage until a collection.
func (f *FleetResult) PeakPerWorker() float64 {
	return perWorker(f.Idle.RSSPeak, f.RSSBefore, f.Config.N)
}

// CPUPerHeartbeat is the hub's CPU time over the idle window per heartbeat
// the fleet sent in it (everything else the hub did included).
func (f *FleetResult) CPUPerHeartbeat() time.Duration {
	if f.Idle.Heartbeats == 0 {
		return 0
	}
	return time.Duration(f.Idle.CPU * float64(f.Idle.Length) / float64(f.Idle.Heartbeats))
}

// DispatchRatio is the big fleet's dispatch rate over the small one's (0
// without the reference).
func (f *FleetResult) DispatchRatio() float64 {
	if f.SmallJobsPerSec <= 0 {
		return 0
	}
	return f.JobsPerSec / f.SmallJobsPerSec
}

// idleWindow follows the hub for cfg.IdleWindow: its CPU, its RSS every
// second, its garbage collections (from /metrics, at both ends).
func idleWindow(ctx context.Context, hub *Hub, d time.Duration) (IdleWindow, error) {
	var w IdleWindow
	m0, err := hub.Metrics(ctx)
	if err != nil {
		return w, fmt.Errorf("scrape /metrics: %w", err)
	}
	c0, err := CPUTime(hub.Pid())
	if err != nil {
		return w, err
	}
	t0 := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(t0) < d {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return w, ctx.Err()
		}
		rss, err := RSS(hub.Pid())
		if err != nil {
			return w, err
		}
		w.RSSPeak = max(w.RSSPeak, rss)
	}
	c1, err := CPUTime(hub.Pid())
	if err != nil {
		return w, err
	}
	w.Length = time.Since(t0)
	w.CPU = float64(c1-c0) / float64(w.Length)
	m1, err := hub.Metrics(ctx)
	if err != nil {
		return w, fmt.Errorf("scrape /metrics: %w", err)
	}
	w.GCs = int(m1[gcCountMetric] - m0[gcCountMetric])
	return w, nil
}

// gcCountMetric counts the Go runtime's completed collections.
const gcCountMetric = "go_gc_duration_seconds_count"

// cpuOver measures a process's CPU use over d as a fraction of one core.
func cpuOver(ctx context.Context, pid int, d time.Duration) (float64, error) {
	c0, err := CPUTime(pid)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	c1, err := CPUTime(pid)
	if err != nil {
		return 0, err
	}
	return float64(c1-c0) / float64(time.Since(t0)), nil
}

// fleetHubArgs lift the hub's connection and session limits for a fleet
// of n simulated workers, which share one token and one IP address.
func fleetHubArgs(n int) []string {
	return []string{"--max-conns", "0", "--max-conns-per-ip", "0", "--max-sessions-per-token", strconv.Itoa(n + 1)}
}

// RunFleet connects cfg.N in-process workers to one hub binary and
// measures registration time, memory, heartbeat CPU and dispatch rate.
func RunFleet(ctx context.Context, env *Env, cfg FleetRunConfig, logf func(string, ...any)) (*FleetResult, error) {
	res := &FleetResult{Config: cfg}
	limit, err := RaiseNoFile()
	if err != nil {
		return nil, fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if limit < uint64(cfg.N)+512 {
		return nil, fmt.Errorf("open-files limit %d is too low for %d workers (need about %d; raise the hard limit)", limit, cfg.N, cfg.N+512)
	}
	if cfg.SmallN > 0 {
		if res.SmallJobsPerSec, err = smallFleetDispatch(ctx, env, cfg); err != nil {
			return nil, fmt.Errorf("reference dispatch with %d workers: %w", cfg.SmallN, err)
		}
		logf("fleet: reference: %.0f jobs/s with %d workers connected", res.SmallJobsPerSec, cfg.SmallN)
	}
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return nil, err
	}
	defer func() { _ = q.Delete(env.AMQPURL) }()
	res.HubArgs = env.Shown(env.HubArgs(Queues{Execute: "<execute>", Status: "<status>"}, "<grpc>", "<http>", fleetHubArgs(cfg.N)...))
	hub, err := env.StartHub(ctx, q, fleetHubArgs(cfg.N)...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = hub.Stop(30 * time.Second) }()
	if res.IdleCPUNoWorkers, err = cpuOver(ctx, hub.Pid(), 3*time.Second); err != nil {
		return nil, err
	}
	if res.RSSBefore, err = RSS(hub.Pid()); err != nil {
		return nil, err
	}
	before, err := hub.Metrics(ctx)
	if err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
	}
	logf("fleet: connecting %d workers (%d at a time)", cfg.N, cfg.Parallel)
	t0 := time.Now()
	fleet := StartFleet(FleetConfig{Addr: hub.GRPCAddr, Token: env.WorkerToken, N: cfg.N, Parallel: cfg.Parallel, Prefix: "fleet"})
	defer fleet.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = fleet.WaitRegistered(rctx)
	cancel()
	if err != nil {
		return nil, err
	}
	res.RegisterAll = fleet.Stats().LastRegistered.Sub(t0)
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.RSSAfter, err = RSS(hub.Pid()); err != nil {
		return nil, err
	}
	after, err := hub.Metrics(ctx)
	if err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
	}
	if cfg.N > 0 {
		res.GoroutinesPerWorker = (after["go_goroutines"] - before["go_goroutines"]) / float64(cfg.N)
	}
	admin, actx, closeAdmin, err := hub.Admin(ctx)
	if err != nil {
		return nil, err
	}
	res.HubListsLive, err = LiveWorkers(actx, admin)
	closeAdmin()
	if err != nil {
		return nil, fmt.Errorf("ListWorkers: %w", err)
	}
	logf("fleet: %d registered in %s, %.1f KiB RSS per worker; idle for %s", cfg.N, res.RegisterAll.Round(time.Millisecond),
		res.RSSPerWorker()/1024, cfg.IdleWindow)
	hb0 := fleet.Stats().Heartbeats
	if res.Idle, err = idleWindow(ctx, hub, cfg.IdleWindow); err != nil {
		return nil, err
	}
	res.Idle.Heartbeats = fleet.Stats().Heartbeats - hb0
	logf("fleet: hub CPU %.1f%% of a core for %d heartbeats; peak %.1f KiB RSS per worker", 100*res.Idle.CPU, res.Idle.Heartbeats,
		res.PeakPerWorker()/1024)
	if res.JobsPerSec, res.Account, err = fleetDispatch(ctx, env, q, cfg); err != nil {
		return nil, err
	}
	res.Stats = fleet.Stats()
	logf("fleet: %.0f jobs/s with %d workers connected (%s)", res.JobsPerSec, cfg.N, res.Account)
	return res, nil
}

// fleetDispatch publishes cfg.Jobs at full speed to a hub whose fleet is
// connected (the hub dispatches as they arrive) and times the statuses.
func fleetDispatch(ctx context.Context, env *Env, q Queues, cfg FleetRunConfig) (float64, Account, error) {
	ledger := NewLedger()
	coll, err := NewCollector(env.AMQPURL, q.Status, ledger)
	if err != nil {
		return 0, Account{}, err
	}
	defer coll.Close()
	pub, err := NewPublisher(env.AMQPURL, q.Execute, ledger, 512)
	if err != nil {
		return 0, Account{}, err
	}
	_, err = pub.PublishBacklog(ctx, "fleetjob", cfg.Jobs)
	if cerr := pub.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, Account{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := ledger.WaitAnswered(wctx, cfg.Jobs); err != nil {
		return 0, Account{}, fmt.Errorf("fleet dispatch: %w", err)
	}
	return Rate(ledger.StatusTimes(), cfg.Skip), ledger.Account(), nil
}

// smallFleetDispatch measures the same dispatch with cfg.SmallN workers on
// a hub of its own.
func smallFleetDispatch(ctx context.Context, env *Env, cfg FleetRunConfig) (float64, error) {
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return 0, err
	}
	defer func() { _ = q.Delete(env.AMQPURL) }()
	hub, err := env.StartHub(ctx, q)
	if err != nil {
		return 0, err
	}
	defer func() { _ = hub.Stop(30 * time.Second) }()
	fleet := StartFleet(FleetConfig{Addr: hub.GRPCAddr, Token: env.WorkerToken, N: cfg.SmallN, Parallel: cfg.Parallel, Prefix: "small"})
	defer fleet.Close()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = fleet.WaitRegistered(rctx)
	cancel()
	if err != nil {
		return 0, err
	}
	rate, _, err := fleetDispatch(ctx, env, q, cfg)
	return rate, err
}
