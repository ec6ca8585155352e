// Command btbench measures Blacktree against raw RabbitMQ and at fleet
// scale, on one machine, and writes docs/BENCHMARKS.md:
//
//	btbench --out docs/BENCHMARKS.md                 # everything (make bench)
//	btbench --scenarios baseline                     # the amqp091 relay only
//	btbench --scenarios dispatch,fleet,failure --fleet 10000
//
// It needs RabbitMQ on --amqp-url and builds blacktree-hub and
// blacktree-worker from the module it runs in. Every run is bounded
// (--timeout) and stops every process it started.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/blacktree/blacktree/bench"
	"github.com/blacktree/blacktree/internal/cluster"
)

type options struct {
	amqpURL       string
	scenarios     string
	out           string
	profileDir    string
	logLevel      string
	hubEnv        []string
	workerEnv     []string
	verbose       bool
	timeout       time.Duration
	dispatch      bench.DispatchConfig
	fleet         bench.FleetRunConfig
	logs          bench.LogsConfig
	shortGrace    time.Duration
	defaultGrace  bool
	skipPartition bool
	profileFleet  int
	profileIdle   time.Duration
}

func main() {
	bench.FloorServerMain()   // when re-executed as the fleet's memory floor
	bench.DispatchFloorMain() // when re-executed as a dispatch-floor server or client
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("btbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.amqpURL, "amqp-url", envOr("BLACKTREE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ `URL` (env BLACKTREE_AMQP_URL)")
	fs.StringVar(&o.scenarios, "scenarios", "dispatch,fleet,failure,profile,logs", "comma-separated: baseline (relay only), dispatch, fleet, failure, profile (in-process hub under pprof), logs (jobs that print like builds)")
	fs.StringVar(&o.out, "out", "", "write the Markdown report to this `file` (e.g. docs/BENCHMARKS.md)")
	fs.StringVar(&o.profileDir, "profile-dir", filepath.Join(os.TempDir(), "btbench-profiles"), "`dir` the pprof profiles are saved in (kept after the run)")
	fs.StringVar(&o.logLevel, "log-level", "info", "hub and worker --log-level")
	fs.Func("hub-env", "KEY=VALUE added to every hub's environment, e.g. GOGC=50 (repeatable)", envFlag(&o.hubEnv))
	fs.Func("worker-env", "KEY=VALUE added to every worker process's environment, e.g. GOMAXPROCS=1 (repeatable)", envFlag(&o.workerEnv))
	fs.BoolVar(&o.verbose, "v", false, "print the hub's and workers' output")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up after this long")
	fs.IntVar(&o.dispatch.Jobs, "jobs", 20000, "dispatch: backlog size drained by each side")
	fs.IntVar(&o.dispatch.Prefetch, "prefetch", 32, "dispatch: relay prefetch and hub --prefetch")
	fs.IntVar(&o.dispatch.Workers, "workers", 4, "dispatch: noop worker processes")
	fs.IntVar(&o.dispatch.Slots, "slots", 8, "dispatch: slots per worker")
	fs.IntVar(&o.logs.Lines, "logs-lines", 200, "logs: lines each job prints over --logs-job (the same --workers and --slots, every slot busy)")
	fs.DurationVar(&o.logs.JobLength, "logs-job", time.Second, "logs: how long each job runs")
	fs.DurationVar(&o.logs.Window, "logs-window", 8*time.Second, "logs: how long CPU is measured, after 2s of warm-up")
	fs.IntVar(&o.logs.Rounds, "logs-rounds", 2, "logs: pairs of runs, workers' --log-flush-interval 0 and default, alternating")
	fs.BoolVar(&o.dispatch.OneWorker, "one-worker", true, "dispatch: also measure Blacktree with the same slots in one worker process (--workers x --slots)")
	fs.BoolVar(&o.dispatch.Binpack, "binpack", true, "dispatch: also measure Blacktree as deployed with the hub's --placement binpack, in the first drain and every round")
	fs.DurationVar(&o.dispatch.LatencyFor, "latency-for", 10*time.Second, "dispatch: length of each fixed-rate latency run")
	fs.Float64Var(&o.dispatch.LowLoadFraction, "low-load", 0.1, "dispatch: also measure latency at this fraction of the baseline's saturation (0: skip)")
	fs.Float64Var(&o.dispatch.LoadFraction, "load", 0.5, "dispatch: offered load of the latency runs, as a fraction of the baseline's saturation")
	fs.Float64Var(&o.dispatch.Skip, "skip", 0.1, "warm-up fraction of statuses dropped from throughput")
	fs.BoolVar(&o.dispatch.Floor, "dispatch-floor", true, "dispatch: also drain the backlog through bare grpc-go processes exchanging only the contract's four frames per job: unpaced, paced at Blacktree's rate and at the target's, as the real hub's workers, and behind a relay that takes the contract's steps and nothing else, alternating with the relay --rounds times (BTBENCH_FLOOR_BURST=N in the environment hands paced jobs out N at a time)")
	fs.IntVar(&o.dispatch.Rounds, "rounds", 3, "dispatch: backlog drains per side, alternating (rounds after the first on fresh processes); the throughput verdict is the median ratio")
	fs.IntVar(&o.fleet.N, "fleet", 10000, "fleet: in-process workers connected to one hub")
	fs.IntVar(&o.fleet.SmallN, "fleet-small", 100, "fleet: workers of the same-run reference dispatch (0: skip)")
	fs.IntVar(&o.fleet.BusySlots, "fleet-busy-slots", 8, "fleet: slots of each worker in the partly busy fleet's dispatch")
	fs.IntVar(&o.fleet.BusyHold, "fleet-busy-hold", 4, "fleet: jobs each worker of the partly busy fleet keeps running while the dispatch is timed (0: skip that dispatch)")
	fs.IntVar(&o.fleet.Parallel, "fleet-parallel", 200, "fleet: registrations in flight at once")
	fs.IntVar(&o.fleet.Jobs, "fleet-jobs", 5000, "fleet: jobs dispatched with the fleet connected")
	fs.BoolVar(&o.fleet.Floor, "floor", true, "fleet: first measure the same fleet on a bare grpc-go server (memory baseline)")
	fs.DurationVar(&o.fleet.Settle, "settle", 5*time.Second, "fleet: wait after the last registration before reading RSS")
	fs.DurationVar(&o.fleet.IdleWindow, "idle-window", 30*time.Second, "fleet: shortest window for the hub's heartbeat CPU and steady-state RSS")
	fs.IntVar(&o.fleet.SteadyGCs, "steady-gcs", 2, "fleet: extend the idle window until the hub has run this many garbage collections")
	fs.DurationVar(&o.fleet.SteadyMax, "steady-max", 4*time.Minute, "fleet: longest idle window while waiting for --steady-gcs")
	fs.DurationVar(&o.shortGrace, "short-grace", 2*time.Second, "failure: the short --lost-worker-grace")
	fs.BoolVar(&o.defaultGrace, "default-grace", true, "failure: also measure with the hub's default grace (30s)")
	fs.BoolVar(&o.skipPartition, "skip-partition", false, "failure: skip the silent-partition measurement")
	fs.IntVar(&o.profileFleet, "profile-fleet", 10000, "profile: in-process workers connected for the idle CPU and heap profiles (0: skip)")
	fs.DurationVar(&o.profileIdle, "profile-idle", 15*time.Second, "profile: length of the idle-fleet CPU profile")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: btbench [flags]\n\nMeasures Blacktree against a raw amqp091-go relay, at fleet scale and under\nfailures; see docs/BENCHMARKS.md. Needs RabbitMQ.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := newFlagSet(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "baseline", "dispatch", "fleet", "failure", "profile", "logs":
			want[s] = true
		case "":
		default:
			fmt.Fprintf(stderr, "btbench: unknown scenario %q (want baseline, dispatch, fleet, failure, profile, logs)\n", s)
			return 2
		}
	}
	o.fleet.Skip = o.dispatch.Skip
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	logf := func(format string, a ...any) {
		fmt.Fprintf(stdout, "%s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	rep := &bench.Report{Command: "btbench " + strings.Join(args, " "), Started: time.Now(), Host: bench.HostLine(), LogLevel: o.logLevel, HubEnv: o.hubEnv, WorkerEnv: o.workerEnv}
	code := func() int {
		work, err := os.MkdirTemp("", "btbench-")
		if err != nil {
			fmt.Fprintln(stderr, "btbench:", err)
			return 1
		}
		defer os.RemoveAll(work)
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			fmt.Fprintln(stderr, "btbench:", err)
			return 1
		}
		o.dispatch.ProfileDir, o.fleet.ProfileDir = o.profileDir, o.profileDir

		if want["baseline"] && !want["dispatch"] {
			d, err := bench.RunBaseline(ctx, o.amqpURL, o.dispatch, logf)
			if err != nil {
				rep.Errors = append(rep.Errors, "baseline: "+err.Error())
			}
			rep.Dispatch = d
		}
		if !(want["dispatch"] || want["fleet"] || want["failure"] || want["profile"] || want["logs"]) {
			return 0
		}
		root, err := cluster.ModuleRoot()
		if err != nil {
			fmt.Fprintln(stderr, "btbench:", err)
			return 1
		}
		logf("building blacktree-hub and blacktree-worker")
		env, err := bench.NewEnv(ctx, o.amqpURL, root, work, o.logLevel)
		if err != nil {
			fmt.Fprintln(stderr, "btbench:", err)
			return 1
		}
		env.HubEnv, env.WorkerEnv = o.hubEnv, o.workerEnv
		if o.verbose {
			env.Tee = stdout
		}
		if want["dispatch"] {
			d, err := bench.RunDispatch(ctx, env, o.dispatch, logf)
			if err != nil {
				rep.Errors = append(rep.Errors, "dispatch: "+err.Error())
			}
			rep.Dispatch = d
		}
		if want["fleet"] {
			f, err := bench.RunFleet(ctx, env, o.fleet, logf)
			if err != nil {
				rep.Errors = append(rep.Errors, "fleet: "+err.Error())
			}
			rep.Fleet = f
		}
		if want["failure"] {
			fr := &bench.FailureResult{}
			graces := []time.Duration{o.shortGrace}
			if o.defaultGrace {
				graces = append(graces, 0)
			}
			for _, g := range graces {
				k, err := bench.RunKill(ctx, env, g, logf)
				if err != nil {
					rep.Errors = append(rep.Errors, fmt.Sprintf("kill -9 (grace %s): %v", g, err))
					continue
				}
				fr.Kills = append(fr.Kills, *k)
			}
			if !o.skipPartition {
				pr, err := bench.RunPartition(ctx, env, logf)
				if err != nil {
					rep.Errors = append(rep.Errors, "partition: "+err.Error())
				} else {
					fr.Partition = *pr
				}
			}
			rep.Failure = fr
		}
		if want["profile"] {
			rep.DispatchConfig = &o.dispatch
			pr, err := bench.RunProfile(ctx, env, o.dispatch, o.profileFleet, o.fleet.Jobs, o.profileIdle, logf)
			if err != nil {
				rep.Errors = append(rep.Errors, "profile: "+err.Error())
			}
			rep.Profile = pr
		}
		if want["logs"] {
			o.logs.Workers, o.logs.Slots, o.logs.Warmup = o.dispatch.Workers, o.dispatch.Slots, 2*time.Second
			l, err := bench.RunLogs(ctx, env, o.logs, logf)
			if err != nil {
				rep.Errors = append(rep.Errors, "logs: "+err.Error())
			}
			rep.Logs = l
		}
		return 0
	}()
	rep.Elapsed = time.Since(rep.Started)
	var buf bytes.Buffer
	rep.WriteMarkdown(&buf)
	if o.out != "" {
		old, _ := os.ReadFile(o.out) // a missing file has no findings yet
		buf.WriteString(bench.PreserveFindings(string(old)))
		if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
			fmt.Fprintln(stderr, "btbench:", err)
			return 1
		}
		logf("wrote %s", o.out)
	} else {
		_, _ = stdout.Write(buf.Bytes())
	}
	if code == 0 && len(rep.Errors) > 0 {
		for _, e := range rep.Errors {
			fmt.Fprintln(stderr, "btbench:", e)
		}
		return 1
	}
	return code
}

// envFlag appends KEY=VALUE arguments to *dst.
func envFlag(dst *[]string) func(string) error {
	return func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		*dst = append(*dst, v)
		return nil
	}
}
