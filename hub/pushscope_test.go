package hub

import (
	"strings"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// With a push scope configured, the hub answers a job whose imageName is
// outside it with a failed status at VALIDATE, before any worker sees
// it; a job inside runs.
func TestPushScopeRefusedBeforeDispatch(t *testing.T) {
	scope, err := jobspec.ParsePushScope([]string{"registry.example.com/team"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.Policy.PushScope = scope })
	dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1"}, true)
	outside := validJob("outside-1")
	outside.ImageName = "ghcr.io/another-team/app:latest"
	inside := validJob("inside-1")
	inside.ImageName = "registry.example.com/team/app:1"
	e.publish(outside, inside)
	got := e.waitStatus("outside-1", "inside-1")
	if s := got["outside-1"]; s.GetSuccess() || s.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_VALIDATE ||
		!strings.Contains(s.GetError(), "ghcr.io/another-team/app") || !strings.Contains(s.GetError(), "registry.example.com/team") {
		t.Errorf("status outside-1 = %v, want failed at VALIDATE naming the image and the prefix", s)
	}
	if s := got["inside-1"]; !s.GetSuccess() {
		t.Errorf("status inside-1 = %v, want success", s)
	}
}
