package builds

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// sharedAMQP is the machine's broker (scripts/ensure-rabbitmq).
const sharedAMQP = "amqp://guest:guest@127.0.0.1:5672/"

// One round of the rebuild scenario, for real: a hub, a docker worker on
// the machine's engine, the git server and the registry, and the
// hand-run beside them.
func TestRunMeasuresOneRebuildRoundOnTheRealEngine(t *testing.T) {
	root, err := cluster.ModuleRoot()
	if err != nil {
		t.Fatalf("ModuleRoot() = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		AMQPURL:   sharedAMQP,
		Root:      root,
		Dir:       t.TempDir(),
		Rounds:    1,
		DepsSleep: time.Second,
		Logf:      t.Logf,
	}, "test")
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("Run() errors = %q", res.Errors)
	}
	if len(res.Rebuild) != 4 {
		t.Fatalf("Run() recorded %d builds, want 4 (cold and warm of each side): %+v", len(res.Rebuild), res.Rebuild)
	}
	repos := map[string]string{}
	for _, b := range res.Rebuild {
		if b.Round != 1 || b.Seconds <= 0 {
			t.Errorf("build %+v: want round 1 and a time to image", b)
		}
		if other, ok := repos[b.Repo]; ok && other != b.Side {
			t.Errorf("repository %s built by both sides, want one each", b.Repo)
		}
		repos[b.Repo] = b.Side
	}
	for _, side := range []string{SideBlacktree, SideHand} {
		for _, kind := range []string{KindCold, KindWarm} {
			if n := len(pick(res.Rebuild, side, kind)); n != 1 {
				t.Errorf("%s %s builds = %d, want 1", side, kind, n)
			}
		}
	}
	if res.Setup.HandBuilder == "not run" || !strings.Contains(res.Setup.Engine, "API") {
		t.Errorf("Setup = %+v, want the hand-run's builder and the engine's version", res.Setup)
	}
	if len(res.Fleet) != 0 {
		t.Errorf("Fleet = %+v with FleetWorkers 0, want none", res.Fleet)
	}
}
