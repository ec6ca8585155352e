package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/rabbit"
)

// DispatchConfig configures the dispatch comparison.
type DispatchConfig struct {
	// Jobs is the backlog each side drains in each round.
	Jobs int
	// Prefetch is the relay's prefetch and the hub's --prefetch.
	Prefetch int
	// Workers noop worker processes with Slots slots each serve the hub.
	Workers int
	Slots   int
	// Rounds is how many times each side drains a backlog, alternating,
	// on fresh processes and queues: one drain on a shared machine can be
	// off by a third, so the ratio reported is the median of the rounds'.
	Rounds int
	// LatencyFor is how long each fixed-rate latency run publishes.
	LatencyFor time.Duration
	// LoadFraction of Blacktree's median drain rate is the rate both
	// sides are offered in the latency runs.
	LoadFraction float64
	// Skip is the warm-up fraction dropped from throughput (Rate).
	Skip float64
	// JournalCost also drains each round's backlog through Blacktree
	// with the workers' job journal off (BLACKTREE_BENCH_NO_JOURNAL), to
	// measure what the journal costs (docs/design/worker-journal.md).
	JournalCost bool
}

// DefaultDispatchConfig is what `make bench` runs: the hub's default
// prefetch, 4 workers whose slots fill it, 3 rounds.
func DefaultDispatchConfig() DispatchConfig {
	return DispatchConfig{
		Jobs:         20000,
		Prefetch:     rabbit.DefaultPrefetch,
		Workers:      4,
		Slots:        rabbit.DefaultPrefetch / 4,
		Rounds:       3,
		LatencyFor:   10 * time.Second,
		LoadFraction: 0.5,
		Skip:         0.1,
		JournalCost:  true,
	}
}

// Drain is one side's drain of a backlog.
type Drain struct {
	JobsPerSec float64
	// CPUPerJob is each role's CPU per job drained, in µs of one core
	// (roles: btbench, broker, hub, workers), and "total" the machine's
	// busy time per job.
	CPUPerJob map[string]float64
	Account   Account
}

// Round is one alternating pair of drains.
type Round struct {
	Baseline  Drain
	Blacktree Drain
	// NoJournal is Blacktree with the workers' job journal off (zero
	// unless DispatchConfig.JournalCost).
	NoJournal Drain
}

// Ratio is Blacktree's drain rate over the baseline's (0 without one).
func (r Round) Ratio() float64 {
	if r.Baseline.JobsPerSec <= 0 {
		return 0
	}
	return r.Blacktree.JobsPerSec / r.Baseline.JobsPerSec
}

// LatencyRun is one fixed-rate latency measurement of one side.
type LatencyRun struct {
	Rate    float64
	Latency Latency
	// ToWorker and Back split Latency where the status carries the
	// worker's startedAt and finishedAt (Blacktree; empty for the relay):
	// publish → started and finished → status received.
	ToWorker Latency
	Back     Latency
	// MaxLag is the publisher's largest lag behind its schedule.
	MaxLag    time.Duration
	CPUPerJob map[string]float64
	Account   Account
}

// DispatchResult is the dispatch comparison.
type DispatchResult struct {
	Config     DispatchConfig
	HubArgs    []string
	WorkerArgs []string
	Rounds     []Round
	// BaselineLatency and BlacktreeLatency are each offered the same rate:
	// Config.LoadFraction of Blacktree's median drain rate.
	BaselineLatency  *LatencyRun
	BlacktreeLatency *LatencyRun
}

// Ratio is the median of the rounds' ratios.
func (d *DispatchResult) Ratio() float64 {
	var rs []float64
	for _, r := range d.Rounds {
		if x := r.Ratio(); x > 0 {
			rs = append(rs, x)
		}
	}
	return median(rs)
}

// JournalRatio is the median over the rounds of Blacktree's drain rate
// over its rate with the workers' job journal off (0 if not measured).
func (d *DispatchResult) JournalRatio() float64 {
	var rs []float64
	for _, r := range d.Rounds {
		if r.NoJournal.JobsPerSec > 0 {
			rs = append(rs, r.Blacktree.JobsPerSec/r.NoJournal.JobsPerSec)
		}
	}
	return median(rs)
}

// BlacktreeRate is the median of Blacktree's drain rates.
func (d *DispatchResult) BlacktreeRate() float64 {
	var rs []float64
	for _, r := range d.Rounds {
		rs = append(rs, r.Blacktree.JobsPerSec)
	}
	return median(rs)
}

func median(rs []float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	sorted := slices.Clone(rs)
	slices.Sort(sorted)
	n := len(sorted)
	if n%2 == 0 {
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return sorted[n/2]
}

// side is one running consumer side: the relay, or a hub and its workers.
type side struct {
	q     Queues
	roles func() map[string][]int // its processes by role, for CPU per job
	stop  func()
}

// startRelay starts the baseline relay on q.
func startRelay(url string, q Queues, cfg DispatchConfig) (*side, error) {
	relay, err := StartRelay(url, q, cfg.Prefetch)
	if err != nil {
		return nil, err
	}
	return &side{
		q:     q,
		roles: func() map[string][]int { return nil }, // the relay runs in btbench
		stop:  func() { _ = relay.Stop() },
	}, nil
}

// hubArgs are the hub's flags in the dispatch comparison: its defaults
// but the prefetch.
func (cfg DispatchConfig) hubArgs() []string {
	return []string{"--prefetch", fmt.Sprint(cfg.Prefetch)}
}

// startBlacktree starts a hub and cfg.Workers noop workers on q and
// waits until the hub lists them live; with noJournal the workers keep
// no job journal.
func startBlacktree(ctx context.Context, env *Env, q Queues, cfg DispatchConfig, prefix string, noJournal bool) (*side, error) {
	hub, err := env.StartHub(ctx, q, cfg.hubArgs()...)
	if err != nil {
		return nil, err
	}
	var workers []*cluster.Process
	s := &side{
		q: q,
		roles: func() map[string][]int {
			m := map[string][]int{"hub": {hub.Pid()}}
			for _, w := range workers {
				m["workers"] = append(m["workers"], w.Pid())
			}
			return m
		},
		stop: func() {
			for _, w := range workers {
				_ = w.Stop(20 * time.Second)
			}
			_ = hub.Stop(20 * time.Second)
		},
	}
	for i := range cfg.Workers {
		name := fmt.Sprintf("%s-w%d", prefix, i)
		workerEnv := env.WorkerEnv
		if noJournal {
			workerEnv = append(slices.Clone(workerEnv), "BLACKTREE_BENCH_NO_JOURNAL=1")
		}
		w, err := env.start("worker "+name, env.Bins.Worker, env.WorkerArgs(name, hub.GRPCAddr, cfg.Slots, 0), workerEnv)
		if err != nil {
			s.stop()
			return nil, err
		}
		workers = append(workers, w)
	}
	admin, actx, closeAdmin, err := hub.Admin(ctx)
	if err != nil {
		s.stop()
		return nil, err
	}
	defer closeAdmin()
	if err := WaitLiveWorkers(actx, admin, cfg.Workers, time.Minute); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// rolePIDs lists every followed process, this one as btbench.
func rolePIDs(s *side) map[string][]int {
	roles := map[string][]int{"btbench": {0}}
	if b := BrokerPIDs(); len(b) > 0 {
		roles["broker"] = b
	}
	for k, v := range s.roles() {
		roles[k] = v
	}
	return roles
}

// cpuPerJob turns a meter's reading into µs of CPU per job, by role.
func cpuPerJob(use CPUUse, roles map[string][]int, jobs int) map[string]float64 {
	if jobs == 0 {
		return nil
	}
	perJob := func(coreFrac float64) float64 { return coreFrac * use.Wall.Seconds() * 1e6 / float64(jobs) }
	out := map[string]float64{"total": perJob(use.MachineBusy * float64(runtime.NumCPU()))}
	for role, pids := range roles {
		for _, pid := range pids {
			out[role] += perJob(use.Procs[pid])
		}
	}
	return out
}

// drain publishes a backlog to fresh queues, starts a side on them with
// start and times the statuses; the side is stopped before it returns.
func drain(ctx context.Context, url string, cfg DispatchConfig, prefix string, start func(Queues) (*side, error)) (Drain, error) {
	var d Drain
	q := NewQueues("btbench")
	if err := q.Declare(url); err != nil {
		return d, err
	}
	defer func() { _ = q.Delete(url) }()
	ledger := NewLedger()
	pub, err := NewPublisher(url, q.Execute, ledger, 512)
	if err != nil {
		return d, err
	}
	_, err = pub.PublishBacklog(ctx, prefix, cfg.Jobs)
	if cerr := pub.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return d, err
	}
	coll, err := NewCollector(url, q.Status, ledger)
	if err != nil {
		return d, err
	}
	defer coll.Close()
	s, err := start(q)
	if err != nil {
		return d, err
	}
	defer s.stop()
	roles := rolePIDs(s)
	meter := StartCPUMeter(allPIDs(roles)...)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := ledger.WaitAnswered(wctx, cfg.Jobs); err != nil {
		return d, fmt.Errorf("drain %s: %w", prefix, err)
	}
	d.CPUPerJob = cpuPerJob(meter.Stop(), roles, cfg.Jobs)
	d.JobsPerSec = Rate(ledger.StatusTimes(), cfg.Skip)
	d.Account = ledger.Account()
	return d, nil
}

// allPIDs lists the processes of every role.
func allPIDs(roles map[string][]int) []int {
	var all []int
	for _, v := range roles {
		all = append(all, v...)
	}
	return all
}

// latency starts a side on fresh queues and offers it a fixed rate for
// cfg.LatencyFor.
func latency(ctx context.Context, url string, cfg DispatchConfig, prefix string, rate float64, start func(Queues) (*side, error)) (*LatencyRun, error) {
	run := &LatencyRun{Rate: rate}
	q := NewQueues("btbench")
	if err := q.Declare(url); err != nil {
		return nil, err
	}
	defer func() { _ = q.Delete(url) }()
	s, err := start(q)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	ledger := NewLedger()
	coll, err := NewCollector(url, q.Status, ledger)
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	pub, err := NewPublisher(url, q.Execute, ledger, 512)
	if err != nil {
		return nil, err
	}
	roles := rolePIDs(s)
	meter := StartCPUMeter(allPIDs(roles)...)
	ids, lag, err := pub.PublishRate(ctx, prefix, rate, cfg.LatencyFor)
	if cerr := pub.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := ledger.WaitAnswered(wctx, len(ids)); err != nil {
		return nil, fmt.Errorf("latency %s: %w", prefix, err)
	}
	run.CPUPerJob = cpuPerJob(meter.Stop(), roles, len(ids))
	run.MaxLag = lag
	run.Latency = Summarize(ledger.Latencies())
	toWorker, back := ledger.Legs()
	run.ToWorker, run.Back = Summarize(toWorker), Summarize(back)
	run.Account = ledger.Account()
	return run, nil
}

// RunDispatch drains cfg.Rounds backlogs through the baseline relay and
// through Blacktree (the hub binary and noop worker binaries, as
// deployed), alternating, each on fresh processes and queues; then offers
// both the same fixed rate, cfg.LoadFraction of Blacktree's median drain
// rate, and measures the latency.
func RunDispatch(ctx context.Context, env *Env, cfg DispatchConfig, logf func(string, ...any)) (*DispatchResult, error) {
	res := &DispatchResult{
		Config:     cfg,
		HubArgs:    env.Shown(env.HubArgs(Queues{Execute: "<execute>", Status: "<status>"}, "<grpc>", "<http>", cfg.hubArgs()...)),
		WorkerArgs: env.Shown(env.WorkerArgs("<name>", "<grpc>", cfg.Slots, 0)),
	}
	relay := func(q Queues) (*side, error) { return startRelay(env.AMQPURL, q, cfg) }
	for r := range max(cfg.Rounds, 1) {
		var round Round
		var err error
		logf("dispatch round %d: draining %d jobs through the relay", r+1, cfg.Jobs)
		if round.Baseline, err = drain(ctx, env.AMQPURL, cfg, fmt.Sprintf("base%d", r), relay); err != nil {
			return res, fmt.Errorf("baseline: %w", err)
		}
		// With the journal off, every other round goes first, so that
		// neither side always drains on a warmer machine.
		noJournalFirst := cfg.JournalCost && r%2 == 1
		if noJournalFirst {
			if round.NoJournal, err = drainNoJournal(ctx, env, cfg, r, logf); err != nil {
				return res, err
			}
		}
		logf("dispatch round %d: draining %d jobs through the hub and %d workers x %d slots", r+1, cfg.Jobs, cfg.Workers, cfg.Slots)
		prefix := fmt.Sprintf("bt%d", r)
		round.Blacktree, err = drain(ctx, env.AMQPURL, cfg, prefix, func(q Queues) (*side, error) {
			return startBlacktree(ctx, env, q, cfg, prefix, false)
		})
		if err != nil {
			return res, fmt.Errorf("blacktree: %w", err)
		}
		if cfg.JournalCost && !noJournalFirst {
			if round.NoJournal, err = drainNoJournal(ctx, env, cfg, r, logf); err != nil {
				return res, err
			}
		}
		logf("dispatch round %d: relay %.0f jobs/s, blacktree %.0f jobs/s (%.2fx), without the journal %.0f jobs/s", r+1, round.Baseline.JobsPerSec, round.Blacktree.JobsPerSec, round.Ratio(), round.NoJournal.JobsPerSec)
		res.Rounds = append(res.Rounds, round)
	}
	if cfg.LatencyFor <= 0 || cfg.LoadFraction <= 0 {
		return res, nil
	}
	rate := cfg.LoadFraction * res.BlacktreeRate()
	var err error
	logf("dispatch: latency at %.0f jobs/s for %s, relay then blacktree", rate, cfg.LatencyFor)
	if res.BaselineLatency, err = latency(ctx, env.AMQPURL, cfg, "baselat", rate, relay); err != nil {
		return res, fmt.Errorf("baseline latency: %w", err)
	}
	res.BlacktreeLatency, err = latency(ctx, env.AMQPURL, cfg, "btlat", rate, func(q Queues) (*side, error) {
		return startBlacktree(ctx, env, q, cfg, "btlat", false)
	})
	if err != nil {
		return res, fmt.Errorf("blacktree latency: %w", err)
	}
	return res, nil
}

// drainNoJournal drains round r's backlog through Blacktree with the
// workers' job journal off.
func drainNoJournal(ctx context.Context, env *Env, cfg DispatchConfig, r int, logf func(string, ...any)) (Drain, error) {
	logf("dispatch round %d: draining %d jobs through the hub and workers without their job journal", r+1, cfg.Jobs)
	prefix := fmt.Sprintf("bn%d", r)
	d, err := drain(ctx, env.AMQPURL, cfg, prefix, func(q Queues) (*side, error) {
		return startBlacktree(ctx, env, q, cfg, prefix, true)
	})
	if err != nil {
		return d, fmt.Errorf("blacktree without the journal: %w", err)
	}
	return d, nil
}
