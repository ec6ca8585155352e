package builds

import (
	"context"
	"time"

	"github.com/blacktree/blacktree/bench"
)

// Run runs the benchmark's scenarios and returns what it measured. A
// scenario that fails is recorded in Result.Errors, with what it measured
// before failing, and the next one still runs; the error is for a run
// that could not start at all.
func Run(ctx context.Context, c Config, command string) (*Result, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res := &Result{
		Command: command,
		Started: start,
		Host:    bench.HostLine(),
		Setup: Setup{
			Rounds:       cfg.Rounds,
			FleetWorkers: cfg.FleetWorkers,
			FleetRepos:   cfg.FleetRepos,
			FleetRounds:  cfg.FleetRounds,
			Dockerfile:   dockerfile(cfg.BaseImage, "<nonce>", cfg.DepsSleep),
			DepsSleep:    cfg.DepsSleep.Seconds(),
			WorkerArgs:   cfg.WorkerArgs,
		},
	}
	s, err := startServices(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.ensureBase(ctx, ""); err != nil {
		return nil, err
	}
	res.Setup.Engine = engineVersion(ctx)
	res.Setup.WorkerBuilder = s.workerBuilder()
	res.Setup.HubAffinityFlag = hasFlag(s.hubHelp, "cache-affinity")
	res.Setup.HandBuilder = "not run"

	if cfg.Rounds > 0 {
		h, err := s.pickHandCLI(ctx)
		if err == nil {
			res.Setup.HandBuilder = h.String()
			cfg.Logf("hand-run builds with %s", h)
			err = s.runRebuild(ctx, h, res)
		}
		if err != nil {
			res.Errors = append(res.Errors, "rebuild: "+err.Error())
		}
	}
	if cfg.FleetWorkers > 0 {
		if err := s.runFleet(ctx, res); err != nil {
			res.Errors = append(res.Errors, "fleet: "+err.Error())
		}
	}
	res.ElapsedSeconds = time.Since(start).Seconds()
	return res, nil
}
