package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// DispatchConfig configures the dispatch comparison.
type DispatchConfig struct {
	// Jobs is the backlog drained to measure saturation throughput.
	Jobs int
	// Prefetch is the relay's prefetch and the hub's --prefetch.
	Prefetch int
	// Workers noop worker processes with Slots slots each serve the hub.
	Workers, Slots int
	// OneWorker also measures Blacktree with the same slots in a single
	// worker process (Workers × Slots slots): what the per-process cost of
	// several worker runtimes on the benchmark's shared cores adds.
	OneWorker bool
	// Binpack also measures Blacktree as deployed with the hub's
	// --placement binpack (hub.PlacementBinpack), in the first drain and
	// in every round.
	Binpack bool
	// LatencyFor is how long each fixed-rate latency run publishes.
	LatencyFor time.Duration
	// LoadFraction of a saturation rate is the offered load of the
	// latency runs (0.5: half saturation).
	LoadFraction float64
	// LowLoadFraction, when positive, adds a latency run at this fraction
	// of the baseline's saturation (a light load every side sustains).
	LowLoadFraction float64
	// Skip is the warm-up fraction dropped from throughput (Rate).
	Skip float64
	// Rounds is how many times the baseline and Blacktree (as deployed)
	// each drain a backlog, alternating; rounds after the first run on
	// fresh processes and queues. The throughput verdict is the median of
	// the rounds' ratios: one drain on a shared machine can be off by a
	// third.
	Rounds int
	// Floor also drains the backlog through the dispatch floor
	// (dispatchfloor.go): bare grpc-go processes exchanging only the
	// contract's four frames per job.
	Floor bool
	// ProfileDir, when set and the hub serves pprof, receives a CPU
	// profile of the hub while it drains the backlog.
	ProfileDir string
}

// LatencyRun is one fixed-rate latency measurement.
type LatencyRun struct {
	Rate    float64
	Latency Latency
	// ToWorker and Back split Latency where the status carries the
	// worker's startedAt and finishedAt (Blacktree; empty for the relay):
	// publish → started and finished → status received.
	ToWorker, Back Latency
	// HubPublish is the hub's blacktree_status_publish_seconds histogram
	// over the run (Blacktree only): JobResult taken up → status confirmed
	// by the broker. Not a part of Back: the collector may get a status
	// before its confirm. Only N, P50 and P99 are set, interpolated within
	// the histogram's doubling buckets.
	HubPublish Latency
	Account    Account
	MaxLag     time.Duration // the publisher's largest lag behind schedule
	// CPUPerJob is each role's CPU per job answered at this rate, in µs
	// of one core, with "total" the whole machine's busy time per job
	// (roles as in SideResult.DrainCPU).
	CPUPerJob map[string]float64
	// Skipped says why the run was not made (the offered rate exceeds
	// what this side sustains: it would measure queue growth).
	Skipped string
}

// SideResult is one side (baseline or a Blacktree variant).
type SideResult struct {
	Name         string
	Throughput   float64 // jobs/s draining the backlog
	DrainAccount Account
	// DrainMachineBusy is the machine's busy fraction while draining;
	// DrainCPU each role's CPU as a fraction of one core.
	DrainMachineBusy float64
	DrainCPU         map[string]float64
	// DrainSyscalls is each role's read and write system calls while
	// draining (roles whose /proc/<pid>/io was readable).
	DrainSyscalls map[string]int64
	// Latency holds one run per offered rate (DispatchResult.Rates).
	Latency []LatencyRun
}

// DispatchResult is the dispatch comparison.
type DispatchResult struct {
	Config DispatchConfig
	// Sides: [0] baseline, [1] Blacktree as deployed, then Blacktree with
	// one worker process (sideOneWorker, when Config.OneWorker) and with
	// binpack placement (sideBinpack, when Config.Binpack).
	Sides []SideResult
	// Rates are the offered loads of the latency runs: LoadFraction of the
	// baseline's saturation, then of Blacktree's.
	Rates      []float64
	RateLabels []string
	HubArgs    []string
	WorkerArgs []string
	Profile    string // pprof -top of the hub during the drain, or why not
	// ProfileOneWorker is the same for the one-worker drain.
	ProfileOneWorker string
	// Rounds are the drains after the first (DispatchConfig.Rounds).
	Rounds []Round
	// With DispatchConfig.Floor: Floor is the dispatch floor's drain,
	// unpaced; FloorAtRate the floor paced at Blacktree's (as deployed)
	// drain rate, the like-for-like comparison, since CPU per job depends
	// on the rate; FloorAtTarget the floor paced at the target's rate
	// (targetRatio × the baseline's); HubFloorClients the real hub's drain
	// with the floor's clients as its workers; GRPCRelay the alternating
	// pairs of the relay and the gRPC relay (grpcrelay.go) with the same
	// clients.
	Floor, FloorAtRate, FloorAtTarget *DispatchFloor
	HubFloorClients                   *SideResult
	GRPCRelay                         []GRPCRelayPair
}

// targetRatio is the throughput target: Blacktree's jobs/s over the
// baseline's (issue #8).
const targetRatio = 0.8

// The names of the optional Blacktree sides (DispatchResult.Sides).
const (
	sideOneWorker = "blacktree, one worker process"
	sideBinpack   = "blacktree, binpack placement"
)

// Round is one more alternating drain of both sides (DispatchConfig.Rounds).
type Round struct {
	Baseline, Blacktree float64 // jobs/s
	Binpack             float64 // jobs/s with --placement binpack; 0: not measured
}

// side returns the side named name, or nil.
func (d *DispatchResult) side(name string) *SideResult {
	for i := range d.Sides {
		if d.Sides[i].Name == name {
			return &d.Sides[i]
		}
	}
	return nil
}

// ThroughputRatio is Blacktree's (as deployed) over the baseline's: the
// median over the first drain and the extra rounds.
func (d *DispatchResult) ThroughputRatio() float64 {
	return median(d.RoundRatios())
}

// BinpackRatio is the same for Blacktree with binpack placement (0 when it
// was not measured).
func (d *DispatchResult) BinpackRatio() float64 {
	return median(d.binpackRatios())
}

func median(rs []float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	sorted := slices.Clone(rs)
	slices.Sort(sorted)
	if n := len(sorted); n%2 == 0 {
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return sorted[len(sorted)/2]
}

// RoundRatios lists Blacktree's ratio to the baseline in each round, the
// first drain (Sides) first.
func (d *DispatchResult) RoundRatios() []float64 {
	var rs []float64
	for _, r := range d.allRounds() {
		rs = append(rs, r.Blacktree/r.Baseline)
	}
	return rs
}

// binpackRatios is RoundRatios for binpack placement, over the rounds that
// measured it.
func (d *DispatchResult) binpackRatios() []float64 {
	var rs []float64
	for _, r := range d.allRounds() {
		if r.Binpack > 0 {
			rs = append(rs, r.Binpack/r.Baseline)
		}
	}
	return rs
}

// allRounds is the first drain (Sides) and the extra rounds, leaving out
// any without a baseline rate.
func (d *DispatchResult) allRounds() []Round {
	if len(d.Sides) < 2 {
		return nil
	}
	first := Round{Baseline: d.Sides[0].Throughput, Blacktree: d.Sides[1].Throughput}
	if b := d.side(sideBinpack); b != nil {
		first.Binpack = b.Throughput
	}
	var rs []Round
	for _, r := range append([]Round{first}, d.Rounds...) {
		if r.Baseline > 0 {
			rs = append(rs, r)
		}
	}
	return rs
}

// drain publishes a backlog, starts the consumer side and measures how
// fast the statuses come back. start starts the consumer side.
func drain(ctx context.Context, url string, q Queues, cfg DispatchConfig, prefix string, start func() error, pids func() map[string][]int, during func()) (SideResult, map[string][]int, error) {
	var r SideResult
	ledger := NewLedger()
	pub, err := NewPublisher(url, q.Execute, ledger, 512)
	if err != nil {
		return r, nil, err
	}
	if _, err := pub.PublishBacklog(ctx, prefix, cfg.Jobs); err != nil {
		pub.Close()
		return r, nil, err
	}
	if err := pub.Close(); err != nil {
		return r, nil, err
	}
	coll, err := NewCollector(url, q.Status, ledger)
	if err != nil {
		return r, nil, err
	}
	defer coll.Close()
	if err := start(); err != nil {
		return r, nil, err
	}
	roles := map[string][]int{"btbench": {0}}
	if b := BrokerPIDs(); len(b) > 0 {
		roles["broker"] = b
	}
	if pids != nil {
		for k, v := range pids() {
			roles[k] = v
		}
	}
	meter := StartCPUMeter(allPIDs(roles)...)
	if during != nil {
		go during()
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := ledger.WaitAnswered(wctx, cfg.Jobs); err != nil {
		return r, nil, fmt.Errorf("drain %s: %w", prefix, err)
	}
	use := meter.Stop()
	r.DrainMachineBusy, r.DrainCPU, r.DrainSyscalls = use.MachineBusy, map[string]float64{}, map[string]int64{}
	for role, ps := range roles {
		for _, pid := range ps {
			r.DrainCPU[role] += use.Procs[pid]
			if n, ok := use.Syscalls[pid]; ok {
				r.DrainSyscalls[role] += n
			}
		}
	}
	r.Throughput = Rate(ledger.StatusTimes(), cfg.Skip)
	r.DrainAccount = ledger.Account()
	return r, roles, nil
}

// allPIDs lists the processes of every role.
func allPIDs(roles map[string][]int) []int {
	var all []int
	for _, v := range roles {
		all = append(all, v...)
	}
	return all
}

// latency offers a fixed rate to an already-running consumer side whose
// processes are roles.
func latency(ctx context.Context, url string, s *side, cfg DispatchConfig, prefix string, rate float64) (LatencyRun, error) {
	q, roles := s.q, s.roles
	run := LatencyRun{Rate: rate}
	var publishBefore Histogram
	if s.hub != nil {
		var err error
		if publishBefore, err = s.hub.Histogram(ctx, statusPublishMetric); err != nil {
			return run, err
		}
	}
	ledger := NewLedger()
	coll, err := NewCollector(url, q.Status, ledger)
	if err != nil {
		return run, err
	}
	defer coll.Close()
	pub, err := NewPublisher(url, q.Execute, ledger, 512)
	if err != nil {
		return run, err
	}
	meter := StartCPUMeter(allPIDs(roles)...)
	ids, lag, err := pub.PublishRate(ctx, prefix, rate, cfg.LatencyFor)
	if cerr := pub.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return run, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := ledger.WaitAnswered(wctx, len(ids)); err != nil {
		return run, fmt.Errorf("latency %s: %w", prefix, err)
	}
	use := meter.Stop()
	if s.hub != nil {
		after, err := s.hub.Histogram(ctx, statusPublishMetric)
		if err != nil {
			return run, err
		}
		h := after.Sub(publishBefore)
		run.HubPublish = Latency{N: h.N(), P50: h.Quantile(0.5), P99: h.Quantile(0.99)}
	}
	if n := float64(len(ids)); n > 0 {
		usPerJob := func(coreFrac float64) float64 { return coreFrac * use.Wall.Seconds() * 1e6 / n }
		run.CPUPerJob = map[string]float64{"total": usPerJob(use.MachineBusy * float64(runtime.NumCPU()))}
		for role, ps := range roles {
			for _, pid := range ps {
				run.CPUPerJob[role] += usPerJob(use.Procs[pid])
			}
		}
	}
	run.MaxLag = lag
	run.Latency = Summarize(ledger.Latencies())
	toWorker, back := ledger.Legs()
	run.ToWorker, run.Back = Summarize(toWorker), Summarize(back)
	run.Account = ledger.Account()
	return run, nil
}

// statusPublishMetric is the hub's histogram of JobResult → status
// confirmed (hub/metrics.go).
const statusPublishMetric = "blacktree_status_publish_seconds"

// side is one running consumer side of the comparison.
type side struct {
	res   SideResult
	q     Queues
	roles map[string][]int // processes by role, for CPU per job
	hub   *Hub             // Blacktree's hub (nil for the relay): its /metrics
	stop  func()
}

// RunBaseline measures only the amqp091-go relay: backlog drain, then
// latency at cfg.LoadFraction of its saturation.
func RunBaseline(ctx context.Context, url string, cfg DispatchConfig, logf func(string, ...any)) (*DispatchResult, error) {
	s, err := startBaseline(ctx, url, cfg, logf)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	rate := s.res.Throughput * cfg.LoadFraction
	run, err := latency(ctx, url, s, cfg, "base-lat0", rate)
	if err != nil {
		return nil, err
	}
	s.res.Latency = []LatencyRun{run}
	logf("baseline: at %.0f jobs/s %s", rate, run.Latency)
	return &DispatchResult{Config: cfg, Sides: []SideResult{s.res}, Rates: []float64{rate},
		RateLabels: []string{"half the baseline's saturation"}}, nil
}

func startBaseline(ctx context.Context, url string, cfg DispatchConfig, logf func(string, ...any)) (*side, error) {
	q := NewQueues("btbench")
	if err := q.Declare(url); err != nil {
		return nil, err
	}
	var relay *Relay
	stop := func() {
		if relay != nil {
			_ = relay.Stop()
		}
		_ = q.Delete(url)
	}
	logf("baseline: draining %d jobs through the amqp091 relay (prefetch %d)", cfg.Jobs, cfg.Prefetch)
	res, roles, err := drain(ctx, url, q, cfg, "base", func() error {
		var err error
		relay, err = StartRelay(url, q, cfg.Prefetch)
		return err
	}, nil, nil)
	if err != nil {
		stop()
		return nil, err
	}
	res.Name = "baseline relay"
	logf("baseline: %.0f jobs/s", res.Throughput)
	return &side{res: res, q: q, roles: roles, stop: stop}, nil
}

// btSpec is one Blacktree side of the dispatch benchmark.
type btSpec struct {
	name, prefix   string // the side's name in the report; process and state-dir prefix
	workers, slots int    // worker processes, slots each
	hubArgs        []string
	// floorClients: the workers are the dispatch floor's clients instead
	// (bare grpc-go processes that answer every job at once,
	// dispatchfloor.go): the hub's cost with workers that cost next to
	// nothing.
	floorClients bool
	profile      func(*Hub) // called with the hub while it drains; may be nil
}

// asDeployed is the spec of Blacktree as deployed: cfg.Workers processes
// of cfg.Slots slots, the hub's defaults.
func asDeployed(cfg DispatchConfig, name, prefix string) btSpec {
	return btSpec{name: name, prefix: prefix, workers: cfg.Workers, slots: cfg.Slots}
}

// asBinpack is asDeployed with the hub's --placement binpack.
func asBinpack(cfg DispatchConfig, name, prefix string) btSpec {
	sp := asDeployed(cfg, name, prefix)
	sp.hubArgs = []string{"--placement", "binpack"}
	return sp
}

// startBlacktree starts a hub and sp.workers noop workers of sp.slots slots
// each on fresh queues and drains the backlog through them.
func startBlacktree(ctx context.Context, env *Env, cfg DispatchConfig, sp btSpec, logf func(string, ...any)) (*side, []string, []string, error) {
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return nil, nil, nil, err
	}
	var hub *Hub
	var procs []*cluster.Process
	stop := func() {
		for _, w := range procs {
			_ = w.Stop(20 * time.Second)
		}
		if hub != nil {
			_ = hub.Stop(20 * time.Second)
		}
		_ = q.Delete(env.AMQPURL)
	}
	prefetch := append([]string{"--prefetch", fmt.Sprint(cfg.Prefetch)}, sp.hubArgs...)
	hubArgs := env.HubArgs(q, "<grpc>", "<http>", prefetch...)
	workerArgs := env.WorkerArgs(sp.prefix+"-w0", "<grpc>", sp.slots, 0)
	kind := "noop workers"
	if sp.floorClients {
		kind = "bare-grpc clients"
	}
	logf("%s: draining %d jobs through the hub and %d %s x %d slots", sp.name, cfg.Jobs, sp.workers, kind, sp.slots)
	res, roles, err := drain(ctx, env.AMQPURL, q, cfg, sp.prefix, func() error {
		var err error
		if hub, err = env.StartHub(ctx, q, prefetch...); err != nil {
			return err
		}
		for i := range sp.workers {
			var w *cluster.Process
			var err error
			if sp.floorClients {
				w, err = env.startFloorClient(hub.GRPCAddr, sp.slots)
			} else {
				args := env.WorkerArgs(fmt.Sprintf("%s-w%d", sp.prefix, i), hub.GRPCAddr, sp.slots, 0)
				w, err = env.start("worker", env.Bins.Worker, args, env.WorkerEnv)
			}
			if err != nil {
				return err
			}
			procs = append(procs, w)
		}
		return nil
	}, func() map[string][]int {
		m := map[string][]int{"hub": {hub.Pid()}}
		for _, w := range procs {
			m["workers"] = append(m["workers"], w.Pid())
		}
		return m
	}, func() {
		if sp.profile != nil {
			sp.profile(hub)
		}
	})
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	res.Name = sp.name
	logf("%s: %.0f jobs/s", sp.name, res.Throughput)
	return &side{res: res, q: q, roles: roles, hub: hub, stop: stop}, hubArgs, workerArgs, nil
}

// RunDispatch measures the baseline relay, then Blacktree (hub binary and
// noop worker binaries, as deployed and optionally with all slots in one
// worker process and with binpack placement), each draining the same backlog on fresh queues; then offers
// every side the same fixed loads: LoadFraction of the baseline's
// saturation and of Blacktree's. A side is not offered a load above 95%
// of its own saturation (the latency would only measure queue growth).
func RunDispatch(ctx context.Context, env *Env, cfg DispatchConfig, logf func(string, ...any)) (*DispatchResult, error) {
	res := &DispatchResult{Config: cfg}
	base, err := startBaseline(ctx, env.AMQPURL, cfg, logf)
	if err != nil {
		return nil, err
	}
	defer base.stop()
	sides := []*side{base}

	profCh := make(chan string, 1)
	spec := asDeployed(cfg, "blacktree", "bt")
	spec.profile = func(h *Hub) { profCh <- captureCPU(ctx, env, h, cfg.ProfileDir, "dispatch", 5*time.Second) }
	bt, hubArgs, workerArgs, err := startBlacktree(ctx, env, cfg, spec, logf)
	if err != nil {
		return nil, err
	}
	defer bt.stop()
	res.HubArgs, res.WorkerArgs = hubArgs, workerArgs
	res.Profile = "not captured: profiling did not finish"
	select {
	case res.Profile = <-profCh:
	case <-time.After(30 * time.Second):
	}
	sides = append(sides, bt)
	if cfg.OneWorker {
		oneCh := make(chan string, 1)
		one, _, _, err := startBlacktree(ctx, env, cfg, btSpec{name: sideOneWorker, prefix: "bt1", workers: 1, slots: cfg.Workers * cfg.Slots,
			profile: func(h *Hub) { oneCh <- captureCPU(ctx, env, h, cfg.ProfileDir, "dispatch-one-worker", 5*time.Second) }}, logf)
		if err != nil {
			return nil, err
		}
		defer one.stop()
		res.ProfileOneWorker = "not captured: profiling did not finish"
		select {
		case res.ProfileOneWorker = <-oneCh:
		case <-time.After(30 * time.Second):
		}
		sides = append(sides, one)
	}
	if cfg.Binpack {
		bp, _, _, err := startBlacktree(ctx, env, cfg, asBinpack(cfg, sideBinpack, "btb"), logf)
		if err != nil {
			return nil, err
		}
		defer bp.stop()
		sides = append(sides, bp)
	}

	res.Rates = []float64{cfg.LoadFraction * base.res.Throughput, cfg.LoadFraction * bt.res.Throughput}
	res.RateLabels = []string{
		fmt.Sprintf("%.0f%% of the baseline's saturation", 100*cfg.LoadFraction),
		fmt.Sprintf("%.0f%% of Blacktree's saturation", 100*cfg.LoadFraction),
	}
	if cfg.LowLoadFraction > 0 {
		res.Rates = append(res.Rates, cfg.LowLoadFraction*base.res.Throughput)
		res.RateLabels = append(res.RateLabels, fmt.Sprintf("%.0f%% of the baseline's saturation", 100*cfg.LowLoadFraction))
	}
	for i, rate := range res.Rates {
		for _, s := range sides {
			if rate > 0.95*s.res.Throughput {
				s.res.Latency = append(s.res.Latency, LatencyRun{Rate: rate,
					Skipped: fmt.Sprintf("offered %.0f jobs/s > 95%% of this side's saturation (%.0f jobs/s)", rate, s.res.Throughput)})
				logf("%s: skipping latency at %.0f jobs/s (saturates at %.0f)", s.res.Name, rate, s.res.Throughput)
				continue
			}
			run, err := latency(ctx, env.AMQPURL, s, cfg, fmt.Sprintf("lat%d", i), rate)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.res.Name, err)
			}
			s.res.Latency = append(s.res.Latency, run)
			logf("%s: at %.0f jobs/s %s", s.res.Name, rate, run.Latency)
		}
	}
	for _, s := range sides {
		res.Sides = append(res.Sides, s.res)
	}
	for r := 1; r < cfg.Rounds; r++ {
		round, err := drainRound(ctx, env, cfg, r, logf)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", r+1, err)
		}
		res.Rounds = append(res.Rounds, round)
	}
	if cfg.Floor {
		if res.Floor, err = RunDispatchFloor(ctx, cfg, 0, logf); err != nil {
			return nil, fmt.Errorf("dispatch floor: %w", err)
		}
		if res.FloorAtRate, err = RunDispatchFloor(ctx, cfg, bt.res.Throughput, logf); err != nil {
			return nil, fmt.Errorf("dispatch floor at Blacktree's rate: %w", err)
		}
		if res.FloorAtTarget, err = RunDispatchFloor(ctx, cfg, targetRatio*base.res.Throughput, logf); err != nil {
			return nil, fmt.Errorf("dispatch floor at the target's rate: %w", err)
		}
		spec := asDeployed(cfg, "blacktree hub, bare-grpc workers", "bthf")
		spec.floorClients = true
		hf, _, _, err := startBlacktree(ctx, env, cfg, spec, logf)
		if err != nil {
			return nil, fmt.Errorf("hub with the floor's clients: %w", err)
		}
		hf.stop()
		res.HubFloorClients = &hf.res
		if res.GRPCRelay, err = RunGRPCRelay(ctx, env, cfg, max(cfg.Rounds, 1), logf); err != nil {
			return nil, fmt.Errorf("grpc relay: %w", err)
		}
	}
	return res, nil
}

// drainRound drains a backlog through a fresh relay, then through a fresh
// hub and workers as deployed, and stops both.
func drainRound(ctx context.Context, env *Env, cfg DispatchConfig, r int, logf func(string, ...any)) (Round, error) {
	base, err := startBaseline(ctx, env.AMQPURL, cfg, logf)
	if err != nil {
		return Round{}, err
	}
	base.stop()
	bt, _, _, err := startBlacktree(ctx, env, cfg, asDeployed(cfg, fmt.Sprintf("blacktree, round %d", r+1), fmt.Sprintf("bt-r%d", r+1)), logf)
	if err != nil {
		return Round{}, err
	}
	bt.stop()
	round := Round{Baseline: base.res.Throughput, Blacktree: bt.res.Throughput}
	if cfg.Binpack {
		bp, _, _, err := startBlacktree(ctx, env, cfg, asBinpack(cfg, fmt.Sprintf("%s, round %d", sideBinpack, r+1), fmt.Sprintf("btb-r%d", r+1)), logf)
		if err != nil {
			return Round{}, err
		}
		bp.stop()
		round.Binpack = bp.res.Throughput
	}
	return round, nil
}

// captureCPU takes a CPU profile of the hub for d when it serves pprof and
// returns its top, or a note saying why there is none. It runs
// concurrently with the measurement (profiling costs the hub a little).
func captureCPU(ctx context.Context, env *Env, hub *Hub, dir, name string, d time.Duration) string {
	if dir == "" {
		return "not captured (no --profile-dir)"
	}
	if hub == nil || !hub.PprofAvailable(ctx) {
		return "not captured: the hub does not serve /debug/pprof/ on --http-addr"
	}
	path := dir + "/" + name + ".cpu.pprof"
	if err := hub.Profile(ctx, "profile", fmt.Sprintf("seconds=%d", int(d.Seconds())), path); err != nil {
		return "capture failed: " + err.Error()
	}
	return "profile " + path + "\n\n" + PprofTop(ctx, env.Bins.Hub, path, "-cum")
}
