package builds

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// startFleet starts n extra engines with scripts/dockerd-fleet and
// returns their DOCKER_HOST values.
func (s *services) startFleet(ctx context.Context, n int) ([]string, error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(s.cfg.Root, "scripts", "dockerd-fleet"), "start", fmt.Sprint(n))
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dockerd-fleet start %d: %w: %s", n, err, strings.TrimSpace(errOut.String()))
	}
	hosts := strings.Fields(out.String())
	if len(hosts) != n {
		return nil, fmt.Errorf("dockerd-fleet start %d: %d engines listed: %q", n, len(hosts), out.String())
	}
	return hosts, nil
}

// stopFleet stops the extra engines; it runs even when ctx has ended.
func (s *services) stopFleet(ctx context.Context) error {
	cmd := exec.CommandContext(context.WithoutCancel(ctx), "bash", filepath.Join(s.cfg.Root, "scripts", "dockerd-fleet"), "stop")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dockerd-fleet stop: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkMainEngineRuns builds a RUN step on the machine's engine with its
// default network: an extra engine that took docker0 with it would make
// it fail ("could not find bridge docker0").
func (s *services) checkMainEngineRuns(ctx context.Context) error {
	if err := s.ensureBase(ctx, ""); err != nil {
		return err
	}
	tag := "bench-check:" + randomHex(4)
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, "-")
	cmd.Env = append(engineEnv(""), "DOCKER_BUILDKIT=0")
	cmd.Stdin = strings.NewReader(fmt.Sprintf("FROM %s\nRUN echo check > /check\n", s.cfg.BaseImage))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("the main engine cannot run a RUN step after the fleet stopped: %w: %s", err, strings.TrimSpace(string(out)))
	}
	_ = exec.CommandContext(ctx, "docker", "rmi", tag).Run()
	return nil
}

// placementFlags are the hub flags of a fleet mode: --cache-affinity
// (and --affinity-wait when configured) where the hub has them, nothing
// where it does not.
func (s *services) placementFlags(mode string) []string {
	if !hasFlag(s.hubHelp, "cache-affinity") {
		return nil
	}
	if mode == "spread" {
		return []string{"--cache-affinity=false"}
	}
	flags := []string{"--cache-affinity=true"}
	if s.cfg.AffinityWait > 0 && hasFlag(s.hubHelp, "affinity-wait") {
		flags = append(flags, "--affinity-wait", s.cfg.AffinityWait.String())
	}
	return flags
}

// runFleet runs the fleet with the hub's cache affinity, then spread.
func (s *services) runFleet(ctx context.Context, res *Result) (err error) {
	s.cfg.Logf("starting %d extra Docker engines", s.cfg.FleetWorkers)
	hosts, err := s.startFleet(ctx, s.cfg.FleetWorkers)
	defer func() {
		stopErr := s.stopFleet(ctx)
		if stopErr == nil {
			stopErr = s.checkMainEngineRuns(context.WithoutCancel(ctx))
		}
		if err == nil {
			err = stopErr
		}
	}()
	if err != nil {
		return err
	}
	for _, mode := range []string{"affinity", "spread"} {
		m, err := s.runFleetMode(ctx, mode, hosts)
		res.Fleet = append(res.Fleet, m)
		if err != nil {
			return fmt.Errorf("fleet %s: %w", mode, err)
		}
	}
	return nil
}

// runFleetMode builds fresh repositories (no cache holds their dependency
// layers) once each, then FleetRounds times changes every one and
// rebuilds them all together.
func (s *services) runFleetMode(ctx context.Context, mode string, hosts []string) (FleetMode, error) {
	m := FleetMode{Mode: mode, HubFlags: s.placementFlags(mode)}
	d, err := s.deploy(ctx, "fleet-"+mode, m.HubFlags, hosts)
	if err != nil {
		return m, err
	}
	var repos []*repo
	for i := range s.cfg.FleetRepos {
		nonce := randomHex(6)
		r, err := s.newRepo(fmt.Sprintf("fleet-%s/app%d-%s", mode, i+1, nonce), nonce)
		if err != nil {
			d.close()
			return m, err
		}
		repos = append(repos, r)
	}
	var jobIDs []string
	for round := 0; round <= s.cfg.FleetRounds; round++ {
		kind := KindRebuild
		if round == 0 {
			kind = KindFirst
		}
		jobs, err := s.fleetRound(ctx, d, repos, round)
		if err != nil {
			d.close()
			return m, err
		}
		got, err := d.buildAll(ctx, jobs)
		if err != nil {
			d.close()
			return m, err
		}
		var line []string
		for i, g := range got {
			m.Builds = append(m.Builds, Build{
				Round:       round,
				Side:        SideBlacktree,
				Kind:        kind,
				Repo:        repos[i].name,
				Seconds:     g.took.Seconds(),
				CachedSteps: g.resp.GetCachedSteps(),
				TotalSteps:  g.resp.GetTotalSteps(),
			})
			jobIDs = append(jobIDs, jobs[i].GetJobId())
			line = append(line, secs(g.took))
		}
		s.cfg.Logf("fleet %s round %d: %s", mode, round, strings.Join(line, ", "))
	}
	d.close() // the workers' logs are complete once they have stopped
	for i := range m.Builds {
		m.Builds[i].Worker = d.workerOf(jobIDs[i])
	}
	return m, nil
}

// fleetRound changes every repository (after round 0), makes sure every
// engine has the base image, and returns the round's jobs.
func (s *services) fleetRound(ctx context.Context, d *deployment, repos []*repo, round int) ([]*blacktreev1.JobRequest, error) {
	var jobs []*blacktreev1.JobRequest
	for _, r := range repos {
		if round > 0 {
			if err := r.change(); err != nil {
				return nil, err
			}
		}
		jobs = append(jobs, d.job(r.name, fmt.Sprintf("%s:v%d", r.name, r.version)))
	}
	for _, host := range d.engines() {
		if err := s.ensureBase(ctx, host); err != nil {
			return nil, err
		}
	}
	return jobs, nil
}
