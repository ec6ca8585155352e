package builds

import (
	"fmt"
	"time"
)

// DefaultBaseImage is the base image of the benchmark's Dockerfiles. It
// is imported offline (scripts/import-base-image) into every engine under
// a name of its own, so that a worker which removes its job's base image
// never takes the one the machine's tests use.
const DefaultBaseImage = "local/bench-busybox:1"

// Config says what one run measures and with which flags.
type Config struct {
	// AMQPURL is the RabbitMQ the hubs use.
	AMQPURL string
	// Root is the module root: the binaries are built from it and its
	// scripts/ are run.
	Root string
	// Dir is a scratch directory (binaries, repositories, process logs).
	Dir string
	// Rounds is how many cold-then-warm pairs each side (Blacktree, the
	// hand-run) builds in the rebuild scenario; 0 skips the scenario.
	Rounds int
	// FleetWorkers is how many workers, each on an engine of its own
	// (scripts/dockerd-fleet), the fleet scenario runs; 0 skips it.
	FleetWorkers int
	// FleetRepos is how many repositories the fleet rebuilds each round.
	FleetRepos int
	// FleetRounds is how many change-then-rebuild rounds each placement
	// mode runs, after one unmeasured first build of every repository.
	FleetRounds int
	// Builder is passed to the workers as --builder when set (buildkit
	// or classic); empty leaves the worker's default and passes nothing.
	Builder string
	// WorkerArgs are added to every worker's command line, e.g. a cache
	// bound.
	WorkerArgs []string
	// AffinityWait is passed to the hub as --affinity-wait in the
	// affinity mode when positive and the hub has the flag.
	AffinityWait time.Duration
	// BaseImage is the FROM of every Dockerfile.
	BaseImage string
	// DepsSleep is how long the dependency layer's RUN step takes.
	DepsSleep time.Duration
	// HandDocker is the docker CLI of the hand-run; empty picks the first
	// of `docker` on PATH and /usr/bin/docker that builds with BuildKit
	// against the engine, else `docker` with the classic builder.
	HandDocker string
	// Logf prints progress; nil prints nothing.
	Logf func(format string, args ...any)
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.Root == "" || out.Dir == "" {
		return out, fmt.Errorf("config: Root and Dir are required")
	}
	if out.FleetWorkers > 0 && (out.FleetRepos < 1 || out.FleetRounds < 1) {
		return out, fmt.Errorf("config: a fleet needs FleetRepos and FleetRounds of at least 1")
	}
	switch out.Builder {
	case "", "buildkit", "classic":
	default:
		return out, fmt.Errorf("config: builder %q: want buildkit, classic or empty", out.Builder)
	}
	if out.BaseImage == "" {
		out.BaseImage = DefaultBaseImage
	}
	if out.DepsSleep <= 0 {
		out.DepsSleep = 2 * time.Second
	}
	if out.Logf == nil {
		out.Logf = func(string, ...any) {}
	}
	return out, nil
}
