package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/devenv"
)

// TestCancelDockerBuild: a docker build cancelled mid-RUN stops within
// the worker's --cancel-grace, is reported cancelled once, and leaves no
// tag in the registry.
func TestCancelDockerBuild(t *testing.T) {
	const grace = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := devenv.ImportBaseImage(ctx, devenv.BaseImage); err != nil {
		t.Fatalf("ImportBaseImage() = %v", err)
	}
	githubToken := "ghp_E2ECANCEL" + randomHex(12)
	git, reg := startExampleServices(t, githubToken)
	if err := git.CreateRepo("user/slow", "main", map[string]string{
		"Dockerfile": "FROM " + devenv.BaseImage + "\nRUN echo building && sleep 300\n",
	}); err != nil {
		t.Fatalf("CreateRepo() = %v", err)
	}
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	w := e.startWorker("docker", []string{h.GRPCAddr}, "--executor", "docker", "--git-base-url", git.URL,
		"--registry", reg.Host, "--cancel-grace", grace.String())
	e.waitWorkers(h, 1, 30*time.Second)
	const id = "cancel-docker"
	req := job(id)
	req.RepoUrl, req.ImageName, req.GithubToken = "user/slow", "slow:cancelled", githubToken
	if err := e.cp.Publish(ctx, req); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	waitAccepted(t, e, h, w, id)
	// The cancel must stop a build, not a clone: wait until the worker
	// reports the build stage to the hub (JobProgress, shown in ListJobs),
	// then give the RUN step a moment to start.
	waitJobStage(ctx, t, e, h, id, blacktreev1.JobStage_JOB_STAGE_BUILD)
	time.Sleep(2 * time.Second)
	if n := len(e.cp.Statuses(id)); n != 0 {
		t.Fatalf("the slow build already has a status: %v", e.cp.Statuses(id))
	}
	sent := time.Now()
	if err := e.cp.PublishCancel(ctx, e.cancelQ(), id, "docker test"); err != nil {
		t.Fatalf("PublishCancel() = %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, grace+30*time.Second) // the grace, plus a generous margin
	defer wcancel()
	at := expectOneCancelled(wctx, t, e, id, "docker test")
	if logs := e.cp.Statuses(id)[0].GetLogs(); !strings.Contains(logs, "building") {
		t.Errorf("the cancelled status's logs lack the RUN step's output (was the build running?):\n%s", tail(logs, 2000))
	}
	if got := manifestStatus(ctx, t, reg.ManifestURL("slow", "cancelled")); got != 404 {
		t.Errorf("manifest of the cancelled build's tag: HTTP %d, want 404 (nothing pushed)", got)
	}
	record(t, "cancel of a docker build in its RUN step: status %s after the cancel (grace %s); tag pushed: none",
		at.Sub(sent).Round(time.Millisecond), grace)
}

// waitJobStage waits until the hub's ListJobs shows job id running in
// stage, as its worker reported it.
func waitJobStage(ctx context.Context, t *testing.T, e *env, h *hubProc, id string, stage blacktreev1.JobStage) {
	t.Helper()
	admin, actx := e.admin(h)
	deadline := time.Now().Add(60 * time.Second)
	var last blacktreev1.JobStage
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := admin.ListJobs(actx, &blacktreev1.ListJobsRequest{})
		if err != nil {
			t.Fatalf("ListJobs() = %v", err)
		}
		for _, j := range resp.GetJobs() {
			if j.GetJobId() == id {
				if last = j.GetStage(); last == stage {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("job %s: the hub shows stage %v after 60 s, want %v", id, last, stage)
}
