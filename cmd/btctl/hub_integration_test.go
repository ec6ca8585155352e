package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// These tests run the real hub (./cmd/blacktree-hub) and the Python worker
// (clients/python/worker.py) on loopback with random queues.

func TestWithHubSubmitWaitAndAdmin(t *testing.T) {
	h := startHub(t, false)
	workerID, _ := startPythonWorker(t, h)
	vars := h.vars()
	ctx := context.Background()

	t.Run("workers lists the connected worker", func(t *testing.T) {
		res := btctl(ctx, vars, "workers", "--insecure")
		if res.code != exitOK {
			t.Fatalf("workers exit = %d; stderr %q", res.code, res.stderr)
		}
		if !strings.Contains(res.stdout, workerID) || !strings.Contains(res.stdout, "free") || !strings.Contains(res.stdout, "LAST HEARTBEAT") || !strings.Contains(res.stdout, "WARM KEYS") {
			t.Errorf("workers output lacks worker %s in state free:\n%s", workerID, res.stdout)
		}
		res = btctl(ctx, vars, "workers", "--insecure", "--json")
		var got struct {
			Workers []struct {
				WorkerID string `json:"workerId"`
				Slots    int    `json:"slots"`
			} `json:"workers"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || len(got.Workers) != 1 || got.Workers[0].WorkerID != workerID || got.Workers[0].Slots != 1 {
			t.Errorf("workers --json = %q (%v), want one worker %s with 1 slot", res.stdout, err, workerID)
		}
	})

	t.Run("submit --wait success exits 0", func(t *testing.T) {
		res := btctl(ctx, vars, "submit", "--repo", "acme/api", "--image", "acme/api:1.2", "--job-id", "py-ok-1", "--wait", "--timeout", "60s")
		if res.code != exitOK {
			t.Fatalf("submit --wait exit = %d, want 0; stderr %q", res.code, res.stderr)
		}
		resp, err := jobspec.DecodeResponse([]byte(res.stdout))
		if err != nil {
			t.Fatalf("stdout is not a JobResponse: %v\n%s", err, res.stdout)
		}
		if resp.GetJobId() != "py-ok-1" || !resp.GetSuccess() || resp.GetImageUrl() != "acme/api:1.2" || resp.GetLogs() != "python worker" {
			t.Errorf("response = %v, want py-ok-1 success image acme/api:1.2 logs \"python worker\"", resp)
		}
	})

	t.Run("submit --wait of a job the hub rejects exits 1", func(t *testing.T) {
		// --skip-validate lets an unsafe request through to the hub, which
		// must report it failed on status.queue
		// (docs/protocol.md#invalid-requests).
		res := btctl(ctx, vars, "submit", "--skip-validate", "--repo", "file:///etc/passwd", "--image", "x:1", "--job-id", "py-bad-1", "--wait", "--timeout", "60s")
		if res.code != exitJobFailed {
			t.Fatalf("submit --wait exit = %d, want 1; stderr %q", res.code, res.stderr)
		}
		resp, err := jobspec.DecodeResponse([]byte(res.stdout))
		if err != nil || resp.GetJobId() != "py-bad-1" || resp.GetSuccess() || !strings.Contains(resp.GetError(), "repoUrl") {
			t.Errorf("response = %v (%v), want failed py-bad-1 naming repoUrl", resp, err)
		}
		// stderr: the "waiting" progress line, then the one error line.
		lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
		if last := lines[len(lines)-1]; len(lines) != 2 || !strings.HasPrefix(last, "btctl: job py-bad-1 failed: invalid repoUrl") {
			t.Errorf("stderr = %q, want a progress line and \"btctl: job py-bad-1 failed: invalid repoUrl...\"", res.stderr)
		}
	})

	t.Run("submit usage error exits 2", func(t *testing.T) {
		res := btctl(ctx, vars, "submit", "--repo", "acme/api", "--wait")
		if res.code != exitUsage {
			t.Fatalf("submit exit = %d, want 2; stderr %q", res.code, res.stderr)
		}
	})

	t.Run("jobs", func(t *testing.T) {
		res := btctl(ctx, vars, "jobs", "--insecure")
		if res.code != exitOK || !strings.Contains(res.stdout, "JOB ID") {
			t.Errorf("jobs = %d %q %q, want 0 and a table", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("cancel a job not held", func(t *testing.T) {
		res := btctl(ctx, vars, "cancel", "never-published-1", "--insecure", "--reason", "test")
		if res.code != exitOK || !strings.Contains(res.stdout, "job never-published-1: not held by this hub") {
			t.Errorf("cancel = %d %q %q, want 0 and not held", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("cancel usage error exits 2", func(t *testing.T) {
		res := btctl(ctx, vars, "cancel", "--insecure")
		if res.code != exitUsage {
			t.Errorf("cancel without a job id = %d %q, want 2", res.code, res.stderr)
		}
		res = btctl(ctx, vars, "cancel", "bad id with spaces", "--insecure")
		if res.code != exitJobFailed || !strings.Contains(res.stderr, "job_id") {
			t.Errorf("cancel of an invalid id = %d %q, want 1 and the hub's refusal", res.code, res.stderr)
		}
	})

	t.Run("wrong admin token exits 3", func(t *testing.T) {
		bad := h.vars()
		bad["BLACKTREE_ADMIN_TOKEN"] = "wrong"
		res := btctl(ctx, bad, "workers", "--insecure")
		if res.code != exitInfra || !strings.Contains(res.stderr, "admin token") {
			t.Errorf("workers with a wrong token = %d %q, want 3 and a token message", res.code, res.stderr)
		}
	})

	t.Run("drain unknown worker exits 1", func(t *testing.T) {
		res := btctl(ctx, vars, "drain", "no-such-worker", "--insecure")
		if res.code != exitJobFailed {
			t.Errorf("drain unknown = %d %q, want 1", res.code, res.stderr)
		}
	})

	t.Run("drain", func(t *testing.T) {
		res := btctl(ctx, vars, "drain", workerID, "--insecure", "--reason", "test")
		if res.code != exitOK || !strings.Contains(res.stdout, "draining") {
			t.Errorf("drain = %d %q %q, want 0 and state draining", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("drain --wait returns once the worker is fenced and idle", func(t *testing.T) {
		// The Python worker says it drains in a heartbeat at once and
		// runs nothing: fenced and idle.
		res := btctl(ctx, vars, "drain", workerID, "--insecure", "--wait", "--timeout", "30s")
		if res.code != exitOK || !strings.Contains(res.stdout, "fenced and idle") {
			t.Errorf("drain --wait = %d %q %q, want 0 and fenced and idle", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("deny", func(t *testing.T) {
		res := btctl(ctx, vars, "deny", workerID, "--insecure", "--reason", "test")
		if res.code != exitOK || !strings.Contains(res.stdout, "is denied; its session was ended") {
			t.Errorf("deny = %d %q %q, want 0 and the session ended", res.code, res.stdout, res.stderr)
		}
		res = btctl(ctx, vars, "workers", "--insecure")
		if res.code != exitOK || !strings.Contains(res.stdout, "dead") {
			t.Errorf("workers after deny = %d %q %q, want the worker dead", res.code, res.stdout, res.stderr)
		}
	})
}

// TestWithTLSHub: btctl verifies the hub with --tls-ca, and the Python
// worker connects over TLS too.
func TestWithTLSHub(t *testing.T) {
	h := startHub(t, true)
	workerID, _ := startPythonWorker(t, h)
	ctx := context.Background()
	res := btctl(ctx, h.vars(), "workers", "--tls-ca", h.tlsCA)
	if res.code != exitOK || !strings.Contains(res.stdout, workerID) {
		t.Errorf("workers over TLS = %d %q %q, want 0 listing %s", res.code, res.stdout, res.stderr, workerID)
	}
	// Without the CA the hub's certificate is not trusted: one line, exit 3.
	res = btctl(ctx, h.vars(), "workers")
	if res.code != exitInfra {
		t.Errorf("workers without --tls-ca = %d %q, want 3", res.code, res.stderr)
	}
	oneLineErr(t, res)
	res = btctl(ctx, h.vars(), "workers", "--insecure", "--tls-ca", h.tlsCA)
	if res.code != exitUsage {
		t.Errorf("workers --insecure --tls-ca = %d %q, want 2", res.code, res.stderr)
	}
}

// TestWithGoWorkerJobsShowsRunningJob uses the Go worker's noop executor
// (jobs that take a while) to see a job in flight in `btctl jobs` and
// `btctl workers`, then takes its status with `watch --consume`.
func TestWithGoWorkerJobsShowsRunningJob(t *testing.T) {
	h := startHub(t, false)
	bin := binaries(t).Worker
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(h.workerTokn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, "blacktree-worker", bin, "--hub", h.grpcAddr, "--insecure", "--token-file", tokenFile,
		"--executor", "noop", "--noop-delay", "3s", "--state-dir", filepath.Join(dir, "state"), "--name", "goworker")
	vars := h.vars()
	ctx := context.Background()

	res := btctl(ctx, vars, "submit", "--repo", "acme/api", "--image", "acme/api:9", "--job-id", "slow-1")
	if res.code != exitOK {
		t.Fatalf("submit = %d %q", res.code, res.stderr)
	}
	runCtx, cancelRun := context.WithTimeout(ctx, 30*time.Second)
	defer cancelRun()
	if cluster.Poll(runCtx, 100*time.Millisecond, func() bool {
		res = btctl(ctx, vars, "jobs", "--insecure")
		return res.code == exitOK && strings.Contains(res.stdout, "slow-1") && strings.Contains(res.stdout, "running")
	}) != nil {
		t.Fatalf("btctl jobs never showed slow-1 running; last: %d %q %q", res.code, res.stdout, res.stderr)
	}
	res = btctl(ctx, vars, "workers", "--insecure")
	if !strings.Contains(res.stdout, "busy") || !strings.Contains(res.stdout, "1: slow-1") {
		t.Errorf("workers while slow-1 runs:\n%s\nwant the worker busy running slow-1", res.stdout)
	}

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res = btctl(wctx, vars, "watch", "--consume", "--count", "1")
	if res.code != exitOK || !strings.Contains(res.stdout, "slow-1 ok") {
		t.Errorf("watch --consume --count 1 = %d %q %q, want slow-1 ok", res.code, res.stdout, res.stderr)
	}
}
