package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

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
	// Let the clone finish and the RUN step start: the cancel must stop a
	// build, not a clone.
	time.Sleep(5 * time.Second)
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
