package docker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// slowDockerfile has enough COPY steps (each commits a layer) to keep the
// legacy builder busy for many seconds without pulling anything.
func slowDockerfile(steps int) string {
	var b strings.Builder
	b.WriteString("FROM scratch\n")
	for i := range steps {
		fmt.Fprintf(&b, "COPY f.txt /f%d\n", i)
	}
	return b.String()
}

// The classic builder's interrupted builds leave images to clean up;
// TestBuildKitCancelStopsPromptly covers BuildKit.
func TestTimeoutAndCancelStopPromptly(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Builder = BuilderClassic })
	e.git.addRepo(t, "acme/slow", repoFiles{files: map[string]string{"Dockerfile": slowDockerfile(100), "f.txt": strings.Repeat("slow\n", 1<<20)}})
	const bound = 20 * time.Second // generous: the job would take far longer

	t.Run("timeout mid-build", func(t *testing.T) {
		req := request("job-timeout", "acme/slow")
		req.TimeoutSeconds = 3
		start := time.Now()
		logs := newLogSink("")
		resp := e.exec.Run(context.Background(), req, logs)
		if d := time.Since(start); d > bound {
			t.Errorf("Run() took %s after a 3s timeout", d)
		}
		// Mid-build on any sane machine; a clone slowed past 3s by a loaded
		// host times out in the clone stage instead, which is also right.
		if resp.GetSuccess() || !strings.HasSuffix(resp.GetError(), ": job timed out after 3s") {
			t.Errorf("Run() = success %v error %q, want build: job timed out after 3s", resp.GetSuccess(), resp.GetError())
		}
		// A loaded host can reach the timeout before the builder has
		// committed a layer; then there is none to look for (cancel
		// mid-build below waits for step 4, so it always checks).
		if len(committedLayers(logs.String())) > 0 {
			assertLayersRemoved(t, e, logs.String())
		} else {
			t.Logf("timed out before the first layer was committed; nothing to check for removal")
		}
		if left := e.workspaceLeft(t); len(left) > 0 {
			t.Errorf("workspace left behind: %v", left)
		}
	})
	t.Run("cancel mid-build", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		logs := newLogSink("Step 4/101")
		done := make(chan *blacktreev1.JobResponse, 1)
		go func() { done <- e.exec.Run(ctx, request("job-cancel", "acme/slow"), logs) }()
		select {
		case <-logs.seen:
		case <-time.After(time.Minute):
			t.Fatalf("build never reached step 4:\n%s", logs.String())
		}
		cancel()
		select {
		case resp := <-done:
			if resp.GetSuccess() || resp.GetError() != "build: job cancelled" || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
				t.Errorf("Run() = success %v stage %v error %q, want build: job cancelled", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
			}
		case <-time.After(bound):
			t.Fatalf("Run() still running %s after cancel", bound)
		}
		if left := e.workspaceLeft(t); len(left) > 0 {
			t.Errorf("workspace left behind: %v", left)
		}
		assertLayersRemoved(t, e, logs.String())
	})
	t.Run("cancel during clone", func(t *testing.T) {
		e.git.setHold(true)
		defer e.git.setHold(false)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan *blacktreev1.JobResponse, 1)
		go func() { done <- e.exec.Run(ctx, request("job-cancel-clone", "acme/slow"), newLogSink("")) }()
		select {
		case <-e.git.held:
		case <-time.After(time.Minute):
			t.Fatal("clone never reached the pack request")
		}
		cancel()
		select {
		case resp := <-done:
			if resp.GetSuccess() || resp.GetError() != "clone: job cancelled" || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_CLONE {
				t.Errorf("Run() = success %v stage %v error %q, want clone: job cancelled", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
			}
		case <-time.After(bound):
			t.Fatalf("Run() still running %s after cancel", bound)
		}
		if left := e.workspaceLeft(t); len(left) > 0 {
			t.Errorf("workspace left behind: %v", left)
		}
	})
}

func TestRepoSizeBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxRepoBytes = 64 << 10 })
	e.git.addRepo(t, "acme/big", repoFiles{files: map[string]string{
		"Dockerfile": "FROM scratch\n",
		"zeros.bin":  strings.Repeat("\x00", 1<<20), // compresses to little: caught at checkout
	}})
	resp := e.exec.Run(context.Background(), request("job-big", "acme/big"), newLogSink(""))
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_CLONE || !strings.Contains(resp.GetError(), "65536 bytes") {
		t.Errorf("Run() = success %v stage %v error %q, want clone refused over 65536 bytes", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
	if left := e.workspaceLeft(t); len(left) > 0 {
		t.Errorf("workspace left behind: %v", left)
	}
}

func TestContextSizeBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxContextBytes = 16 << 10 })
	e.git.addRepo(t, "acme/fat", repoFiles{files: map[string]string{
		"Dockerfile": "FROM scratch\nCOPY big.txt /\n",
		"big.txt":    strings.Repeat("fat context\n", 8<<10),
	}})
	resp := e.exec.Run(context.Background(), request("job-fat", "acme/fat"), newLogSink(""))
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD ||
		!strings.HasPrefix(resp.GetError(), "build: build context too large: more than 16384 bytes") {
		t.Errorf("Run() = success %v stage %v error %q, want build: build context too large", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
	if left := e.workspaceLeft(t); len(left) > 0 {
		t.Errorf("workspace left behind: %v", left)
	}
}

func TestEngineUnreachable(t *testing.T) {
	bogus, err := client.NewClientWithOpts(client.WithHost("unix:///nonexistent/docker.sock"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer bogus.Close()
	e := newEnv(t, func(c *Config) { c.Docker = bogus })
	if err := e.exec.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "docker engine not reachable") {
		t.Errorf("Ping() = %v, want docker engine not reachable", err)
	}
	e.git.addRepo(t, "acme/app", repoFiles{files: map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"}})
	resp := e.exec.Run(context.Background(), request("job-noengine", "acme/app"), newLogSink(""))
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD || !strings.HasPrefix(resp.GetError(), "build: engine refused the build") {
		t.Errorf("Run() = success %v stage %v error %q, want build: engine refused the build", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
	if left := e.workspaceLeft(t); len(left) > 0 {
		t.Errorf("workspace left behind: %v", left)
	}
}
