package builds

import (
	"context"
	"fmt"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// runRebuild measures cold and warm builds of one worker on the machine's
// engine against the hand-run on the same engine, alternating which side
// goes first each round. Each side builds a repository of its own whose
// dependency layer no cache holds (cold), then rebuilds it after a change
// to the file COPY'd last (warm). Round 0 is a warm-up of both sides and
// is not recorded.
func (s *services) runRebuild(ctx context.Context, h handCLI, res *Result) error {
	d, err := s.deploy(ctx, "rebuild", nil, []string{""})
	if err != nil {
		return err
	}
	defer d.close()
	for round := 0; round <= s.cfg.Rounds; round++ {
		sides := []string{SideBlacktree, SideHand}
		if round%2 == 1 {
			sides = []string{SideHand, SideBlacktree}
		}
		for _, side := range sides {
			builds, err := s.coldThenWarm(ctx, d, h, side, round)
			if err != nil {
				return err
			}
			if round > 0 {
				res.Rebuild = append(res.Rebuild, builds...)
				s.cfg.Logf("rebuild round %d %s: cold %s, warm %s", round, side, secs(builds[0].Duration()), secs(builds[1].Duration()))
			}
		}
	}
	return nil
}

// coldThenWarm builds a new repository on one side, then rebuilds it after
// a one-file change.
func (s *services) coldThenWarm(ctx context.Context, d *deployment, h handCLI, side string, round int) ([]Build, error) {
	nonce := randomHex(6)
	r, err := s.newRepo(fmt.Sprintf("rebuild/%s-%d-%s", side, round, nonce), nonce)
	if err != nil {
		return nil, err
	}
	var out []Build
	for _, kind := range []string{KindCold, KindWarm} {
		if kind == KindWarm {
			if err := r.change(); err != nil {
				return nil, err
			}
		}
		if err := s.ensureBase(ctx, ""); err != nil {
			return nil, err
		}
		image := fmt.Sprintf("%s:v%d", r.name, r.version)
		b := Build{Round: round, Side: side, Kind: kind, Repo: r.name}
		if side == SideHand {
			took, err := s.handRun(ctx, h, "", r, image)
			if err != nil {
				return nil, err
			}
			b.Seconds = took.Seconds()
		} else {
			got, err := d.buildAll(ctx, []*blacktreev1.JobRequest{d.job(r.name, image)})
			if err != nil {
				return nil, err
			}
			b.Seconds = got[0].took.Seconds()
			b.CachedSteps, b.TotalSteps = got[0].resp.GetCachedSteps(), got[0].resp.GetTotalSteps()
		}
		out = append(out, b)
	}
	if side == SideHand {
		for v := 0; v <= r.version; v++ {
			s.removeImage(ctx, h, "", fmt.Sprintf("%s:v%d", r.name, v))
		}
	}
	return out, nil
}
