// Command btbench-builds measures time to image through Blacktree against
// a hand-run docker build on the same machine, and cache-aware placement
// against spread on a fleet of engines, and writes the results:
//
//	btbench-builds --json docs/bench/builds.json --out docs/BENCHMARKS-builds.md   # make bench-builds
//	btbench-builds --fleet-workers 0 --rounds 3                                      # the rebuild scenario alone
//
// It needs root, RabbitMQ, the Docker engine and git, and builds
// blacktree-hub and blacktree-worker from the module it runs in.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/blacktree/blacktree/bench/builds"
	"github.com/blacktree/blacktree/internal/cliflags"
	"github.com/blacktree/blacktree/internal/cluster"
)

const usageHead = `btbench-builds: time to image through Blacktree against a hand-run docker build,
and cache affinity against spread on a fleet of Docker engines. Needs root,
RabbitMQ, the Docker engine and git.

Flags:
`

type options struct {
	cfg      builds.Config
	jsonPath string
	mdPath   string
	timeout  time.Duration
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("btbench-builds", flag.ContinueOnError)
	fs.StringVar(&o.cfg.AMQPURL, "amqp-url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ `url` of the hubs")
	fs.IntVar(&o.cfg.Rounds, "rounds", 5, "cold-then-warm pairs per side in the rebuild scenario (0: skip it)")
	fs.IntVar(&o.cfg.FleetWorkers, "fleet-workers", 3, "workers of the fleet scenario, each on a Docker engine of its own (0: skip it)")
	fs.IntVar(&o.cfg.FleetRepos, "fleet-repos", 3, "repositories the fleet rebuilds each round")
	fs.IntVar(&o.cfg.FleetRounds, "fleet-rounds", 10, "change-then-rebuild rounds of each placement mode")
	fs.StringVar(&o.cfg.Builder, "builder", "", "worker --builder (buildkit or classic); empty passes none")
	fs.Func("worker-arg", "argument added to every worker's command line, e.g. --cache-max-size=100MB (repeatable)", func(v string) error {
		o.cfg.WorkerArgs = append(o.cfg.WorkerArgs, v)
		return nil
	})
	fs.DurationVar(&o.cfg.AffinityWait, "affinity-wait", 0, "hub --affinity-wait in the affinity mode (0: passes none)")
	fs.StringVar(&o.cfg.HandDocker, "hand-docker", "", "docker CLI of the hand-run (default: the first that builds with BuildKit)")
	fs.StringVar(&o.jsonPath, "json", "", "write the results as JSON to this `file`")
	fs.StringVar(&o.mdPath, "out", "", "write the Markdown report to this `file`")
	fs.DurationVar(&o.timeout, "timeout", 40*time.Minute, "give up after this long")
	cliflags.SetUsage(fs, usageHead)
	return fs
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := newFlagSet(&o)
	if err := cliflags.Parse(fs, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "btbench-builds:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	root, err := cluster.ModuleRoot()
	if err != nil {
		fmt.Fprintln(stderr, "btbench-builds:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "btbench-builds-")
	if err != nil {
		fmt.Fprintln(stderr, "btbench-builds:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	o.cfg.Root, o.cfg.Dir = root, dir
	o.cfg.Logf = func(format string, a ...any) {
		fmt.Fprintf(stdout, "%s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	res, err := builds.Run(ctx, o.cfg, strings.TrimSpace("btbench-builds "+strings.Join(args, " ")))
	if err != nil {
		fmt.Fprintln(stderr, "btbench-builds:", err)
		return 1
	}
	if err := write(res, o.jsonPath, o.mdPath, stdout); err != nil {
		fmt.Fprintln(stderr, "btbench-builds:", err)
		return 1
	}
	for _, e := range res.Errors {
		fmt.Fprintln(stderr, "btbench-builds:", e)
	}
	if len(res.Errors) > 0 {
		return 1
	}
	return 0
}

// write saves the JSON and the Markdown where asked; without --out the
// Markdown goes to stdout.
func write(res *builds.Result, jsonPath, mdPath string, stdout io.Writer) error {
	if jsonPath != "" {
		if err := writeFile(jsonPath, res.WriteJSON); err != nil {
			return err
		}
	}
	if mdPath == "" {
		res.WriteMarkdown(stdout)
		return nil
	}
	return writeFile(mdPath, func(w io.Writer) error {
		res.WriteMarkdown(w)
		return nil
	})
}

func writeFile(path string, fill func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
