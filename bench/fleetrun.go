package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/blacktree/blacktree/hub"
	"github.com/blacktree/blacktree/internal/cluster"
)

// FleetRunConfig configures the fleet-scale scenario.
type FleetRunConfig struct {
	// N workers connect, each on its own gRPC connection.
	N int
	// Parallel bounds concurrent registrations.
	Parallel int
	// Settle is how long to wait after the last registration before
	// reading the hub's RSS.
	Settle time.Duration
	// IdleWindow is the shortest window over which the hub's CPU and RSS
	// are measured with the workers idle (heartbeating only); at least one
	// heartbeat interval, better three.
	IdleWindow time.Duration
	// SteadyGCs extends the idle window until the hub has completed this
	// many garbage collections since the fleet settled, so that the
	// window's RSS includes the heap's growth up to the GC goal and its CPU
	// includes the collections (0: IdleWindow only).
	SteadyGCs int
	// SteadyMax bounds the idle window when SteadyGCs are slow to come.
	SteadyMax time.Duration
	// Jobs are dispatched with the fleet connected.
	Jobs int
	// SmallN, when positive, first measures the same dispatch with only
	// SmallN workers on a hub of its own: the same-run reference.
	SmallN int
	// BusyHold, when positive, also measures the dispatch with N workers
	// of BusySlots slots that each keep BusyHold jobs running (long builds)
	// on a hub of its own: every worker partly busy, the case in which a
	// hub must choose among thousands of partly busy workers per job
	// (docs/BENCHMARKS.md G23).
	BusySlots, BusyHold int
	// Skip is the warm-up fraction dropped from throughput.
	Skip float64
	// ProfileDir receives hub profiles when the hub serves pprof.
	ProfileDir string
	// Floor, when set, first measures the same fleet on a bare grpc-go
	// server (floor.go): the memory baseline of the same run.
	Floor bool

	// The heartbeat interval the hub gives N workers, and its grid (0:
	// none): the floor server gives the same.
	floorInterval, floorGrid time.Duration
}

// FleetResult is the fleet-scale scenario's outcome.
type FleetResult struct {
	Config              FleetRunConfig
	NoFileLimit         uint64
	RSSBefore, RSSAfter int64
	RSSPerWorker        float64 // bytes
	RegisterAll         time.Duration
	IdleCPUNoWorkers    float64 // fraction of one core, hub with no workers
	IdleCPU             float64 // fraction of one core, hub with N idle workers
	// Idle is the idle window: its length, the hub's garbage collections
	// and heartbeats in it, and the hub's RSS sampled every second.
	Idle         IdleWindowResult
	HubListsLive int
	Throughput   float64
	SmallN       int
	// SmallThroughput is the same dispatch with SmallN workers.
	SmallThroughput float64
	// Busy is the dispatch with every worker partly busy (BusyHold).
	Busy                    *BusyFleetResult
	DispatchAccount         Account
	Stats                   FleetStats
	HubArgs                 []string
	CPUProfile, HeapProfile string
	// MetricsBefore/After are the hub's Go runtime metrics (from /metrics)
	// before the fleet connects and after it settled.
	MetricsBefore, MetricsAfter map[string]float64
	// Floor is the bare grpc-go server's result (Config.Floor).
	Floor *FloorResult
}

// Runtime metrics reported per worker.
var perWorkerMetrics = []string{"go_goroutines", "go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes"}

// PerWorker returns (after-before)/N of a runtime metric.
func (f *FleetResult) PerWorker(name string) float64 {
	if f.Config.N == 0 {
		return 0
	}
	return (f.MetricsAfter[name] - f.MetricsBefore[name]) / float64(f.Config.N)
}

// IdleWindowResult describes an idle window of the fleet scenario.
type IdleWindowResult struct {
	Length           time.Duration
	GCs              int
	RSSPeak, RSSEnd  int64
	MetricsEnd       map[string]float64 // the hub's, after the window
	SteadyGCsReached bool
	// Allocated is the heap allocated during the window (bytes), and
	// Heartbeats the fleet's heartbeats in it: the garbage per heartbeat.
	Allocated  float64
	Heartbeats int64
	// CPU is the process's CPU over the window, a fraction of one core.
	CPU float64
}

// CPUPerHeartbeat is the process's CPU time over the window per heartbeat
// the fleet sent in it (everything else the process did included).
func (r IdleWindowResult) CPUPerHeartbeat() time.Duration {
	if r.Heartbeats == 0 {
		return 0
	}
	return time.Duration(r.CPU * float64(r.Length) / float64(r.Heartbeats))
}

// AllocPerHeartbeat is the heap allocated per heartbeat in the window.
func (r IdleWindowResult) AllocPerHeartbeat() float64 {
	if r.Heartbeats == 0 {
		return 0
	}
	return r.Allocated / float64(r.Heartbeats)
}

// perStream is the RSS growth from before to rss, per one of n streams.
func perStream(rss, before int64, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(rss-before) / float64(n)
}

// PeakPerWorker is the window's peak RSS, less the hub's RSS before the
// fleet connected, per worker.
func (f *FleetResult) PeakPerWorker() float64 {
	return perStream(f.Idle.RSSPeak, f.RSSBefore, f.Config.N)
}

// EndPerWorker is like PeakPerWorker at the window's end.
func (f *FleetResult) EndPerWorker() float64 {
	return perStream(f.Idle.RSSEnd, f.RSSBefore, f.Config.N)
}

// describe names the window for the report: its length and GCs, and
// whether they fell short of the asked-for number.
func (r IdleWindowResult) describe(asked int) string {
	d := fmt.Sprintf("%s, %d GCs", r.Length.Round(time.Second), r.GCs)
	if !r.SteadyGCsReached {
		d += fmt.Sprintf(", fewer than the %d asked for", asked)
	}
	return d
}

// gcProbe reports a Go process's completed garbage collections and the
// bytes it has allocated on the heap so far.
type gcProbe func(context.Context) (gcs int, allocated float64, err error)

// probeEvery: steadyWindow probes every this many seconds. A /metrics
// scrape allocates on the hub's heap: scraping every second would add
// garbage of its own to what the window measures.
const probeEvery = 5

// steadyWindow measures a process's CPU (fraction of one core) and
// samples its RSS once a second while the fleet only heartbeats: for at
// least cfg.IdleWindow, and until probe (every probeEvery seconds) reports
// cfg.SteadyGCs more garbage collections than at the start, at most
// cfg.SteadyMax. who names the process in progress lines.
func steadyWindow(ctx context.Context, pid int, probe gcProbe, cfg FleetRunConfig, rssBefore int64, who string, logf func(string, ...any)) (float64, IdleWindowResult, error) {
	var r IdleWindowResult
	gc0, alloc0, err := probe(ctx)
	if err != nil {
		return 0, r, err
	}
	c0, err := CPUTime(pid)
	if err != nil {
		return 0, r, err
	}
	t0 := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ticks := 1; ; ticks++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, r, ctx.Err()
		}
		rss, err := RSS(pid)
		if err != nil {
			return 0, r, err
		}
		r.RSSPeak, r.RSSEnd = max(r.RSSPeak, rss), rss
		if ticks%probeEvery != 0 {
			continue
		}
		n, alloc, err := probe(ctx)
		if err != nil {
			return 0, r, err
		}
		r.GCs, r.Allocated = n-gc0, alloc-alloc0
		r.SteadyGCsReached = r.GCs >= cfg.SteadyGCs
		el := time.Since(t0)
		if el >= cfg.IdleWindow && (r.SteadyGCsReached || el >= cfg.SteadyMax) {
			break
		}
		if ticks%30 == 0 {
			logf("fleet: %s idle for %s, %d of %d GCs, RSS per worker %.1f KiB", who, el.Round(time.Second), r.GCs, cfg.SteadyGCs,
				perStream(rss, rssBefore, cfg.N)/1024)
		}
	}
	c1, err := CPUTime(pid)
	if err != nil {
		return 0, r, err
	}
	r.Length = time.Since(t0)
	r.CPU = float64(c1-c0) / float64(r.Length)
	return r.CPU, r, nil
}

// hubProbe reads the hub's garbage collections and allocated bytes from
// /metrics.
func hubProbe(hub *Hub) gcProbe {
	return func(ctx context.Context) (int, float64, error) {
		m, err := hub.Metrics(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("scrape /metrics: %w", err)
		}
		return int(m["go_gc_duration_seconds_count"]), m["go_memstats_alloc_bytes_total"], nil
	}
}

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

// RunFleet connects cfg.N in-process workers to one hub binary and
// measures memory, heartbeat CPU, registration time and dispatch
// throughput.
func RunFleet(ctx context.Context, env *Env, cfg FleetRunConfig, logf func(string, ...any)) (*FleetResult, error) {
	res := &FleetResult{Config: cfg, SmallN: cfg.SmallN}
	var err error
	if res.NoFileLimit, err = RaiseNoFile(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if res.NoFileLimit < uint64(cfg.N)+512 {
		return nil, fmt.Errorf("open-files limit %d is too low for %d workers (need about %d; raise the hard limit)", res.NoFileLimit, cfg.N, cfg.N+512)
	}
	if cfg.SmallN > 0 {
		if res.SmallThroughput, err = smallFleetDispatch(ctx, env, cfg, cfg.SmallN); err != nil {
			return nil, fmt.Errorf("reference dispatch with %d workers: %w", cfg.SmallN, err)
		}
		logf("fleet: reference: %.0f jobs/s with %d workers connected", res.SmallThroughput, cfg.SmallN)
	}
	if cfg.BusyHold > 0 {
		if res.Busy, err = busyFleetDispatch(ctx, env, cfg, logf); err != nil {
			return nil, fmt.Errorf("dispatch to a partly busy fleet: %w", err)
		}
	}
	if cfg.Floor {
		if cfg.floorInterval, cfg.floorGrid, err = hubHeartbeats(env.HubEnv, cfg.N); err != nil {
			return nil, err
		}
		logf("fleet: memory floor: %d workers on a bare grpc-go server, heartbeats every %s on a grid of %s", cfg.N, cfg.floorInterval, cfg.floorGrid)
		if res.Floor, err = runFloor(ctx, cfg, logf); err != nil {
			return nil, fmt.Errorf("grpc floor: %w", err)
		}
		logf("fleet: bare grpc-go server: %.1f KiB RSS per stream, %.1f KiB at the peak of its idle window (%s, %d GCs)",
			res.Floor.RSSPerStream/1024, res.Floor.PeakPerStream()/1024, res.Floor.Idle.Length.Round(time.Second), res.Floor.Idle.GCs)
	}
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return nil, err
	}
	defer q.Delete(env.AMQPURL)
	res.HubArgs = env.HubArgs(q, "<grpc>", "<http>")
	hub, err := env.StartHub(ctx, q)
	if err != nil {
		return nil, err
	}
	defer hub.Stop(30 * time.Second)

	if res.IdleCPUNoWorkers, err = cpuOver(ctx, hub.Pid(), 3*time.Second); err != nil {
		return nil, err
	}
	if res.RSSBefore, err = RSS(hub.Pid()); err != nil {
		return nil, err
	}
	if res.MetricsBefore, err = hub.Metrics(ctx); err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
	}
	logf("fleet: hub RSS %.1f MiB before; connecting %d workers (%d at a time)", mib(res.RSSBefore), cfg.N, cfg.Parallel)
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
	logf("fleet: %d registered in %s; settling %s", cfg.N, res.RegisterAll.Round(time.Millisecond), cfg.Settle)
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.RSSAfter, err = RSS(hub.Pid()); err != nil {
		return nil, err
	}
	res.RSSPerWorker = perStream(res.RSSAfter, res.RSSBefore, cfg.N)
	if res.MetricsAfter, err = hub.Metrics(ctx); err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
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
	logf("fleet: hub RSS %.1f MiB after (%.1f KiB per worker); hub lists %d live; measuring while idle for at least %s and %d hub GCs (at most %s)",
		mib(res.RSSAfter), res.RSSPerWorker/1024, res.HubListsLive, cfg.IdleWindow, cfg.SteadyGCs, cfg.SteadyMax)

	hb0 := fleet.Stats().Heartbeats
	if res.IdleCPU, res.Idle, err = steadyWindow(ctx, hub.Pid(), hubProbe(hub), cfg, res.RSSBefore, "hub", logf); err != nil {
		return nil, err
	}
	if res.Idle.MetricsEnd, err = hub.Metrics(ctx); err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
	}
	res.Idle.Heartbeats = fleet.Stats().Heartbeats - hb0
	logf("fleet: idle window %s, %d hub GCs: RSS per worker %.1f KiB at the end, %.1f KiB at the peak",
		res.Idle.Length.Round(time.Second), res.Idle.GCs, res.EndPerWorker()/1024, res.PeakPerWorker()/1024)
	// Profiled after the CPU window, so profiling does not count in it.
	res.CPUProfile = captureCPU(ctx, env, hub, cfg.ProfileDir, "fleet-idle", max(cfg.IdleWindow/3, 5*time.Second))
	res.HeapProfile = captureHeap(ctx, env, hub, cfg.ProfileDir, "fleet")
	logf("fleet: hub CPU %.1f%% of a core with %d idle workers (%d heartbeats in window)", 100*res.IdleCPU, cfg.N, res.Idle.Heartbeats)

	if res.Throughput, res.DispatchAccount, err = fleetDispatch(ctx, env, q, cfg); err != nil {
		return nil, err
	}
	res.Stats = fleet.Stats()
	logf("fleet: %.0f jobs/s with %d workers connected (%s)", res.Throughput, cfg.N, res.DispatchAccount)
	if res.SmallN > 0 && res.SmallThroughput > 0 {
		logf("fleet: %.2fx the throughput with %d workers", res.Throughput/res.SmallThroughput, res.SmallN)
	}
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

// smallFleetDispatch measures the same dispatch with only n workers, on
// a hub of its own: the same-run reference for the big fleet's figure.
func smallFleetDispatch(ctx context.Context, env *Env, cfg FleetRunConfig, n int) (float64, error) {
	q, _, stop, err := fleetOnOwnHub(ctx, env, FleetConfig{N: n, Parallel: cfg.Parallel, Prefix: "small"})
	if err != nil {
		return 0, err
	}
	defer stop()
	rate, _, err := fleetDispatch(ctx, env, q, cfg)
	return rate, err
}

// fleetOnOwnHub starts a hub on fresh queues and connects fc's fleet to it
// (fc.Addr and fc.Token are filled in); stop closes all three.
func fleetOnOwnHub(ctx context.Context, env *Env, fc FleetConfig) (Queues, *Fleet, func(), error) {
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return q, nil, nil, err
	}
	hub, err := env.StartHub(ctx, q)
	if err != nil {
		_ = q.Delete(env.AMQPURL)
		return q, nil, nil, err
	}
	fc.Addr, fc.Token = hub.GRPCAddr, env.WorkerToken
	fleet := StartFleet(fc)
	stop := func() {
		fleet.Close()
		_ = hub.Stop(30 * time.Second)
		_ = q.Delete(env.AMQPURL)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = fleet.WaitRegistered(rctx)
	cancel()
	if err != nil {
		stop()
		return q, nil, nil, err
	}
	return q, fleet, stop, nil
}

// BusyFleetResult is the dispatch to a fleet whose every worker is partly
// busy (FleetRunConfig.BusyHold).
type BusyFleetResult struct {
	N, Slots, Hold int
	// Held is how many jobs the workers keep running; HoldRate how fast
	// the hub placed them (jobs/s, from the publish of the first to the
	// fleet's acceptance of the last).
	Held     int
	HoldRate float64
	// Throughput is the timed dispatch that follows, every worker holding
	// its jobs; Account its ledger.
	Throughput float64
	Account    Account
}

// busyFleetDispatch connects cfg.N workers of cfg.BusySlots slots to a hub
// of its own, has each accept and keep cfg.BusyHold jobs, then times the
// usual dispatch: every pick now chooses among N partly busy workers.
func busyFleetDispatch(ctx context.Context, env *Env, cfg FleetRunConfig, logf func(string, ...any)) (*BusyFleetResult, error) {
	res := &BusyFleetResult{N: cfg.N, Slots: cfg.BusySlots, Hold: cfg.BusyHold, Held: cfg.N * cfg.BusyHold}
	if cfg.BusyHold >= cfg.BusySlots {
		return nil, fmt.Errorf("%d held jobs leave no free slot of %d", cfg.BusyHold, cfg.BusySlots)
	}
	q, fleet, stop, err := fleetOnOwnHub(ctx, env, FleetConfig{N: cfg.N, Parallel: cfg.Parallel, Prefix: "busy",
		Slots: cfg.BusySlots, Hold: cfg.BusyHold})
	if err != nil {
		return nil, err
	}
	defer stop()
	logf("fleet: busy: %d workers of %d slots registered; placing %d jobs they keep", cfg.N, cfg.BusySlots, res.Held)
	pub, err := NewPublisher(env.AMQPURL, q.Execute, NewLedger(), 512)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	_, err = pub.PublishBacklog(ctx, "holdjob", res.Held)
	if cerr := pub.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	err = cluster.Poll(hctx, 20*time.Millisecond, func() bool { return fleet.Stats().Held >= int64(res.Held) })
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%d of %d held jobs placed: %w", fleet.Stats().Held, res.Held, err)
	}
	res.HoldRate = float64(res.Held) / time.Since(start).Seconds()
	logf("fleet: busy: %d held jobs placed at %.0f jobs/s; timing the dispatch", res.Held, res.HoldRate)
	if res.Throughput, res.Account, err = fleetDispatch(ctx, env, q, cfg); err != nil {
		return nil, err
	}
	logf("fleet: busy: %.0f jobs/s with every worker holding %d jobs (%s)", res.Throughput, cfg.BusyHold, res.Account)
	return res, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// captureHeap saves the hub's heap profile (inuse_space) and returns its
// top, or why there is none.
func captureHeap(ctx context.Context, env *Env, hub *Hub, dir, name string) string {
	if dir == "" {
		return "not captured (no --profile-dir)"
	}
	if !hub.PprofAvailable(ctx) {
		return "not captured: the hub does not serve /debug/pprof/ on --http-addr"
	}
	path := dir + "/" + name + ".heap.pprof"
	if err := hub.Profile(ctx, "heap", "gc=1", path); err != nil {
		return "capture failed: " + err.Error()
	}
	return "profile " + path + "\n\n" + PprofTop(ctx, env.Bins.Hub, path, "-sample_index=inuse_space")
}

// hubHeartbeats is the heartbeat interval the hub, run with hubEnv (its
// flags' BLACKTREE_* fallbacks), gives a fleet of n workers, and the grid
// it gives them for their heartbeats' phases (0: none).
func hubHeartbeats(hubEnv []string, n int) (interval, grid time.Duration, err error) {
	var cfg hub.Config
	grid = hub.DefaultHeartbeatGrid
	for _, kv := range hubEnv {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "BLACKTREE_HEARTBEAT_INTERVAL":
			cfg.HeartbeatInterval, err = time.ParseDuration(v)
		case "BLACKTREE_MAX_HEARTBEAT_INTERVAL":
			cfg.MaxHeartbeatInterval, err = time.ParseDuration(v)
		case "BLACKTREE_HEARTBEAT_GRID":
			grid, err = time.ParseDuration(v) // the flag's 0 is off, as here
		case "BLACKTREE_MAX_HEARTBEAT_RATE":
			if cfg.MaxHeartbeatRate, err = strconv.ParseFloat(v, 64); err == nil && cfg.MaxHeartbeatRate == 0 {
				cfg.MaxHeartbeatRate = -1 // the flag's 0 is off
			}
		}
		if err != nil {
			return 0, 0, fmt.Errorf("hub environment %s: %w", kv, err)
		}
	}
	interval, err = hub.FleetHeartbeatInterval(cfg, n)
	return interval, max(grid, 0), err
}
