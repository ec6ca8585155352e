package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/devenv"
)

// TestSeedFlowManyJobs: several workers, many jobs, every jobId answered
// exactly once and successfully.
func TestSeedFlowManyJobs(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	for _, n := range []string{"w1", "w2", "w3"} {
		e.startWorker(n, []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "5ms", "--slots", "2")
	}
	e.waitWorkers(h, 3, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jobs := ids("seed", 300)
	start := time.Now()
	e.publish(ctx, jobs...)
	got, err := e.cp.WaitFor(ctx, jobs...)
	if err != nil {
		t.Fatalf("WaitFor() = %v", err)
	}
	elapsed := time.Since(start)
	workers := map[string]int{}
	for id, r := range got {
		if !r.GetSuccess() {
			t.Errorf("status %s = %v, want success", id, r)
		}
		workers[r.GetWorkerId()]++
	}
	l := e.cp.Ledger(jobs)
	if l.Lost != 0 || l.Duplicates != 0 || l.Unexpected != 0 {
		t.Errorf("Ledger() = %s, want every job answered once", l)
	}
	if len(workers) < 2 {
		t.Errorf("jobs ran on %d workers (%v), want them spread over several", len(workers), workers)
	}
	record(t, "%d jobs, 3 workers x 2 slots: %s in %s, spread %v", len(jobs), l, elapsed.Round(time.Millisecond), len(workers))
}

// TestDockerBuildEndToEnd: the docs/protocol.md example through the docker executor,
// a token-checking git server and a registry; the token leaks nowhere.
func TestDockerBuildEndToEnd(t *testing.T) {
	githubToken := "ghp_E2ESENTINEL" + randomHex(12)
	git, reg := startExampleServices(t, githubToken)

	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	w := e.startWorker("docker", []string{h.GRPCAddr}, "--executor", "docker", "--git-base-url", git.URL, "--registry", reg.Host)
	e.waitWorkers(h, 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	good, bad := job("docker-ok"), job("docker-badtoken")
	good.GithubToken = githubToken
	bad.GithubToken = githubToken + "-wrong"
	start := time.Now()
	if err := e.cp.Publish(ctx, good); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	if err := e.cp.Publish(ctx, bad); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	got, err := e.cp.WaitFor(ctx, good.JobId, bad.JobId)
	if err != nil {
		t.Fatalf("WaitFor() = %v", err)
	}
	if r := got[good.JobId]; !r.GetSuccess() || !strings.HasPrefix(r.GetImageUrl(), reg.Host+"/myapp") {
		t.Errorf("docker-ok status = %v, want success with imageUrl under %s", r, reg.Host)
	}
	if r := got[bad.JobId]; r.GetSuccess() || !strings.Contains(strings.ToLower(r.GetError()), "clone") {
		t.Errorf("docker-badtoken status = %v, want a clone failure", r)
	}
	everything := h.Output() + w.Output()
	for _, b := range e.cp.Bodies() {
		everything += string(b)
	}
	if strings.Contains(everything, githubToken) {
		t.Errorf("the GitHub token appears in hub/worker output or a status message")
	}
	record(t, "build+push and a wrong-token clone answered in %s; token found in output: %v",
		time.Since(start).Round(time.Millisecond), strings.Contains(everything, githubToken))
}

// startExampleServices serves examples/hello as user/reponame from a git
// server that demands githubToken, and starts an empty registry; both stop
// when the test ends.
func startExampleServices(t *testing.T, githubToken string) (*devenv.GitServer, *devenv.Registry) {
	t.Helper()
	if err := devenv.CheckGit(); err != nil {
		t.Fatalf("%v: run scripts/ensure-tools", err)
	}
	git, err := devenv.StartGitServer(t.TempDir(), githubToken)
	if err != nil {
		t.Fatalf("StartGitServer() = %v", err)
	}
	t.Cleanup(func() { git.Close() })
	root, _ := filepath.Abs("..")
	files := map[string]string{}
	for _, name := range []string{"Dockerfile", "hello.txt", "build-info.txt"} {
		b, err := os.ReadFile(filepath.Join(root, "examples", "hello", name))
		if err != nil {
			t.Fatalf("read example: %v", err)
		}
		files[name] = string(b)
	}
	if err := git.CreateRepo("user/reponame", "main", files); err != nil {
		t.Fatalf("CreateRepo() = %v", err)
	}
	reg, err := devenv.StartRegistry()
	if err != nil {
		t.Fatalf("StartRegistry() = %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	return git, reg
}
