// Command btbench measures Blacktree on one machine against baselines
// taken in the same run and writes the figures as JSON and as a Markdown
// table (docs/BENCHMARKS.md):
//
//	btbench --out docs/BENCHMARKS.md               # everything (make bench)
//	btbench --scenarios dispatch --rounds 5
//	btbench --scenarios fleet --fleet 2000 --json fleet.json
//
// It needs RabbitMQ on --amqp-url and builds blacktree-hub and
// blacktree-worker from the module it runs in. Every run is bounded
// (--timeout) and stops every process it started. The hub's and workers'
// settings are their defaults (package hub, workeragent, rabbit).
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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/blacktree/blacktree/bench"
	"github.com/blacktree/blacktree/internal/cluster"
)

// scenarios are btbench's scenarios, in the order they run.
var scenarios = []string{"dispatch", "fleet", "failure", "logs"}

type options struct {
	amqpURL   string
	scenarios string
	out       string
	jsonOut   string
	verbose   bool
	timeout   time.Duration
	dispatch  bench.DispatchConfig
	fleet     bench.FleetRunConfig
	logs      bench.LogsConfig
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	o.dispatch = bench.DefaultDispatchConfig()
	o.fleet = bench.DefaultFleetRunConfig()
	o.logs = bench.DefaultLogsConfig()
	fs := flag.NewFlagSet("btbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.amqpURL, "amqp-url", envOr("BLACKTREE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ `URL` (env BLACKTREE_AMQP_URL)")
	fs.StringVar(&o.scenarios, "scenarios", strings.Join(scenarios, ","), "comma-separated scenarios to run: "+strings.Join(scenarios, ", "))
	fs.StringVar(&o.out, "out", "", "write the Markdown report to this `file` instead of stdout")
	fs.StringVar(&o.jsonOut, "json", "", "also write the figures as JSON to this `file`")
	fs.IntVar(&o.dispatch.Jobs, "jobs", o.dispatch.Jobs, "dispatch: backlog each side drains per round")
	fs.IntVar(&o.dispatch.Rounds, "rounds", o.dispatch.Rounds, "dispatch: alternating drains per side; the ratio is their median")
	fs.IntVar(&o.dispatch.Workers, "workers", o.dispatch.Workers, "dispatch and logs: noop worker processes")
	fs.IntVar(&o.dispatch.Slots, "slots", o.dispatch.Slots, "dispatch and logs: slots per worker")
	fs.IntVar(&o.fleet.N, "fleet", o.fleet.N, "fleet: in-process workers connected to one hub")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up after this long")
	fs.BoolVar(&o.verbose, "v", false, "print the hub's and workers' output")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: btbench [flags]\n\nMeasures Blacktree against baselines taken in the same run; see docs/BENCHMARKS.md.\n\nFlags:\n")
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
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case slices.Contains(scenarios, s):
			want[s] = true
		default:
			fmt.Fprintf(stderr, "btbench: unknown scenario %q (want %s)\n", s, strings.Join(scenarios, ", "))
			return 2
		}
	}
	o.logs.Workers, o.logs.Slots = o.dispatch.Workers, o.dispatch.Slots
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	logf := func(format string, a ...any) {
		fmt.Fprintf(stdout, "%s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	rep := &bench.Report{
		Command: "btbench " + strings.Join(args, " "),
		Started: time.Now(),
		Host:    bench.HostLine(),
	}
	if err := measure(ctx, o, want, rep, stdout, logf); err != nil {
		fmt.Fprintln(stderr, "btbench:", err)
		return 1
	}
	rep.Elapsed = time.Since(rep.Started)
	if err := write(o, rep, stdout); err != nil {
		fmt.Fprintln(stderr, "btbench:", err)
		return 1
	}
	if o.out != "" {
		logf("wrote %s", o.out)
	}
	for _, e := range rep.Errors {
		fmt.Fprintln(stderr, "btbench:", e)
	}
	if len(rep.Errors) > 0 {
		return 1
	}
	return 0
}

// measure runs the wanted scenarios into rep; a scenario that fails is
// recorded in rep.Errors and the others still run.
func measure(ctx context.Context, o options, want map[string]bool, rep *bench.Report, stdout io.Writer, logf func(string, ...any)) error {
	if len(want) == 0 {
		return nil
	}
	work, err := os.MkdirTemp("", "btbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root, err := cluster.ModuleRoot()
	if err != nil {
		return err
	}
	logf("building blacktree-hub and blacktree-worker")
	env, err := bench.NewEnv(ctx, o.amqpURL, root, work, "info")
	if err != nil {
		return err
	}
	if o.verbose {
		env.Tee = stdout
	}
	record := func(name string, err error) {
		if err != nil {
			rep.Errors = append(rep.Errors, name+": "+err.Error())
		}
	}
	if want["dispatch"] {
		rep.Dispatch, err = bench.RunDispatch(ctx, env, o.dispatch, logf)
		record("dispatch", err)
	}
	if want["fleet"] {
		rep.Fleet, err = bench.RunFleet(ctx, env, o.fleet, logf)
		record("fleet", err)
	}
	if want["failure"] {
		rep.Failure, err = bench.RunFailure(ctx, env, 2*time.Second, logf)
		record("failure", err)
	}
	if want["logs"] {
		rep.Logs, err = bench.RunLogs(ctx, env, o.logs, logf)
		record("logs", err)
	}
	return nil
}

// write writes the Markdown report to o.out (stdout without it) and the
// JSON to o.jsonOut when set.
func write(o options, rep *bench.Report, stdout io.Writer) error {
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	if o.out == "" {
		if _, err := stdout.Write(md.Bytes()); err != nil {
			return err
		}
	} else if err := os.WriteFile(o.out, md.Bytes(), 0o644); err != nil {
		return err
	}
	if o.jsonOut == "" {
		return nil
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		return err
	}
	return os.WriteFile(o.jsonOut, js.Bytes(), 0o644)
}
