package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

const secretToken = "ghp_supersecret_should_never_print"

func TestSubmitPublishesRequest(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	vars := queueVars(execute, status)
	vars["BLACKTREE_GITHUB_TOKEN"] = secretToken

	res := btctl(context.Background(), vars, "submit", "--repo", "acme/api", "--branch", "main",
		"--image", "acme/api:1.2", "--context", "svc", "--dockerfile", "svc/Dockerfile",
		"--label", "arch=amd64", "--correlation-id", "corr-1", "--job-id", "job-flags-1",
		"--build-arg", "VERSION=1.2,rc1", "--build-arg", "CHANNEL=beta")
	if res.code != exitOK {
		t.Fatalf("submit exit = %d, want 0; stderr %q", res.code, res.stderr)
	}
	if got := strings.TrimSpace(res.stdout); got != "job-flags-1" {
		t.Errorf("submit stdout = %q, want the job id", got)
	}
	if strings.Contains(res.stdout+res.stderr, secretToken) {
		t.Errorf("submit printed the token: %q %q", res.stdout, res.stderr)
	}
	d := r.get(execute)
	if d.ContentType != "application/json" || d.DeliveryMode != 2 || d.MessageId != "job-flags-1" || d.CorrelationId != "corr-1" {
		t.Errorf("properties = %q mode %d id %q corr %q, want application/json, persistent, job-flags-1, corr-1", d.ContentType, d.DeliveryMode, d.MessageId, d.CorrelationId)
	}
	req, _, err := jobspec.DecodeRequest(d.Body)
	if err != nil {
		t.Fatalf("DecodeRequest(published) = %v", err)
	}
	want := &blacktreev1.JobRequest{
		JobId:          "job-flags-1",
		RepoUrl:        "acme/api",
		Branch:         "main",
		ImageName:      "acme/api:1.2",
		ContextDir:     "svc",
		DockerfilePath: "svc/Dockerfile",
		GithubToken:    secretToken,
		WorkerLabels:   map[string]string{"arch": "amd64"},
		BuildArgs:      map[string]string{"VERSION": "1.2,rc1", "CHANNEL": "beta"},
	}
	if !protoEqual(req, want) {
		t.Errorf("published request = %v, want %v", req, want)
	}
}

func TestSubmitFromFileWithOverrides(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	file := filepath.Join(t.TempDir(), "job.json")
	body := `{"jobId":"from-file","repoUrl":"user/reponame","branch":"main","dockerfilePath":"Dockerfile","contextDir":".","imageName":"myapp:latest","githubToken":"file-token"}`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	res := btctl(context.Background(), queueVars(execute, status), "submit", "--file", file, "--branch", "release")
	if res.code != exitOK {
		t.Fatalf("submit --file exit = %d, want 0; stderr %q", res.code, res.stderr)
	}
	req, _, err := jobspec.DecodeRequest(r.get(execute).Body)
	if err != nil {
		t.Fatal(err)
	}
	if req.GetJobId() != "from-file" || req.GetBranch() != "release" || req.GetGithubToken() != "file-token" || req.GetImageName() != "myapp:latest" {
		t.Errorf("published = %v, want the file's request with branch release", req)
	}
}

func TestSubmitGeneratesJobID(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	res := btctl(context.Background(), queueVars(execute, status), "submit", "--repo", "acme/api", "--image", "acme/api:1")
	if res.code != exitOK {
		t.Fatalf("submit exit = %d; stderr %q", res.code, res.stderr)
	}
	id := strings.TrimSpace(res.stdout)
	if err := jobspec.ValidJobID(id); err != nil || !strings.HasPrefix(id, "btctl-") {
		t.Errorf("generated job id %q: %v", id, err)
	}
	if got := r.get(execute).MessageId; got != id {
		t.Errorf("message_id = %q, want %q", got, id)
	}
}

func TestSubmitUsageErrors(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	vars := queueVars(execute, status)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "missing image", args: []string{"submit", "--repo", "acme/api"}, want: "--image"},
		{name: "unknown flag", args: []string{"submit", "--bogus"}, want: "bogus"},
		{name: "stray argument", args: []string{"submit", "--repo", "a/b", "--image", "x:1", "extra"}, want: "no arguments"},
		{name: "unsafe repo", args: []string{"submit", "--repo", "file:///etc", "--image", "x:1"}, want: "repoUrl"},
		{name: "escaping context", args: []string{"submit", "--repo", "a/b", "--image", "x:1", "--context", "../up"}, want: "contextDir"},
		{name: "bad image", args: []string{"submit", "--repo", "a/b", "--image", "UPPER CASE"}, want: "imageName"},
		{name: "missing file", args: []string{"submit", "--file", "/nonexistent/job.json"}, want: "/nonexistent/job.json"},
		{name: "unknown command", args: []string{"frobnicate"}, want: "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := btctl(context.Background(), vars, tc.args...)
			if res.code != exitUsage {
				t.Fatalf("btctl %v exit = %d, want %d; stderr %q", tc.args, res.code, exitUsage, res.stderr)
			}
			oneLineErr(t, res)
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr = %q, want it to mention %q", res.stderr, tc.want)
			}
		})
	}
	if n := r.depth(execute); n != 0 {
		t.Errorf("depth(execute) = %d after usage errors, want 0 (nothing published)", n)
	}
}

func TestHelpShowsExamples(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"submit", "--help"}, {"watch", "--help"}, {"workers", "--help"}, {"drain", "--help"}, {"deny", "--help"}, {"help", "jobs"}} {
		res := btctl(context.Background(), nil, args...)
		if res.code != exitOK {
			t.Errorf("btctl %v exit = %d, want 0", args, res.code)
		}
		if !strings.Contains(res.stdout, "Example") {
			t.Errorf("btctl %v output has no examples:\n%s", args, res.stdout)
		}
		if n := strings.Count(res.stdout, "Usage:"); n != 1 {
			t.Errorf("btctl %v prints its usage %d times, want once", args, n)
		}
	}
}

func TestInfrastructureErrors(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{name: "broker unreachable", vars: map[string]string{"BLACKTREE_AMQP_URL": "amqp://guest:pw-secret@127.0.0.1:1/"},
			args: []string{"submit", "--repo", "a/b", "--image", "x:1"}, want: "cannot reach RabbitMQ"},
		{name: "missing execute queue", vars: queueVars("no-such-queue-"+execute, status),
			args: []string{"submit", "--repo", "a/b", "--image", "x:1"}, want: "does not exist"},
		{name: "missing status queue", vars: queueVars(execute, "no-such-queue-"+status),
			args: []string{"submit", "--repo", "a/b", "--image", "x:1", "--wait"}, want: "does not exist"},
		{name: "hub unreachable", vars: map[string]string{"BLACKTREE_HUB": "127.0.0.1:1"},
			args: []string{"workers", "--insecure", "--connect-timeout", "2s"}, want: "127.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := btctl(context.Background(), tc.vars, tc.args...)
			if res.code != exitInfra {
				t.Fatalf("btctl %v exit = %d, want %d; stderr %q", tc.args, res.code, exitInfra, res.stderr)
			}
			oneLineErr(t, res)
			if !strings.Contains(res.stderr, tc.want) || strings.Contains(res.stderr, "pw-secret") {
				t.Errorf("stderr = %q, want it to mention %q and no password", res.stderr, tc.want)
			}
		})
	}
	if n := r.depth(execute); n != 0 {
		t.Errorf("depth(execute) = %d, want 0 (a --wait whose status queue is missing must not publish)", n)
	}
}

// fakeHub answers every request on execute with resp(req) on status, like
// the hub would, until ctx ends.
func fakeHub(ctx context.Context, t *testing.T, r *testBroker, execute, status string, resp func(*blacktreev1.JobRequest) *blacktreev1.JobResponse) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			r.mu.Lock()
			d, ok, err := r.ch.Get(execute, true)
			r.mu.Unlock()
			if err != nil {
				t.Errorf("fake hub: get: %v", err)
				return
			}
			if !ok {
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
				continue
			}
			req, _, err := jobspec.DecodeRequest(d.Body)
			if err != nil {
				t.Errorf("fake hub: %v", err)
				return
			}
			r.publishStatus(status, resp(req))
		}
	}()
	return done
}

func TestSubmitWait(t *testing.T) {
	tests := []struct {
		name     string
		success  bool
		wantCode int
	}{
		{name: "job succeeds", success: true, wantCode: exitOK},
		{name: "job fails", success: false, wantCode: exitJobFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRabbit(t)
			execute, status := r.queues()
			// Other jobs' statuses already waiting: --wait must hand them back.
			r.publishStatus(status, &blacktreev1.JobResponse{JobId: "other-1", Success: true, ImageUrl: "o:1"})
			r.publishStatus(status, &blacktreev1.JobResponse{JobId: "other-2", Success: false, Error: "clone: nope"})
			ctx, cancel := context.WithCancel(context.Background())
			done := fakeHub(ctx, t, r, execute, status, func(req *blacktreev1.JobRequest) *blacktreev1.JobResponse {
				if tc.success {
					return &blacktreev1.JobResponse{JobId: req.GetJobId(), Success: true, ImageUrl: "registry.test/" + req.GetImageName(), Logs: "built"}
				}
				return jobspec.Failed(req.GetJobId(), blacktreev1.JobStage_JOB_STAGE_BUILD, errString("build: exit status 1"))
			})
			defer func() { cancel(); <-done }()

			res := btctl(context.Background(), queueVars(execute, status), "submit", "--repo", "acme/api", "--image", "acme/api:1", "--job-id", "mine-1", "--wait", "--timeout", "30s")
			if res.code != tc.wantCode {
				t.Fatalf("submit --wait exit = %d, want %d; stderr %q", res.code, tc.wantCode, res.stderr)
			}
			resp, err := jobspec.DecodeResponse([]byte(res.stdout))
			if err != nil {
				t.Fatalf("stdout is not a JobResponse: %v\n%s", err, res.stdout)
			}
			if resp.GetJobId() != "mine-1" || resp.GetSuccess() != tc.success {
				t.Errorf("printed response = %v, want job mine-1 success=%v", resp, tc.success)
			}
			if !tc.success && !strings.Contains(res.stderr, "build: exit status 1") {
				t.Errorf("stderr = %q, want the job's error", res.stderr)
			}
			r.waitDepth(status, 2)
			for _, want := range []string{"other-1", "other-2"} {
				d := r.get(status)
				if d.MessageId != want {
					t.Errorf("status queue message = %q, want %q (order kept)", d.MessageId, want)
				}
			}
		})
	}
}

func TestSubmitWaitTimesOut(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	r.publishStatus(status, &blacktreev1.JobResponse{JobId: "other-1", Success: true})
	res := btctl(context.Background(), queueVars(execute, status), "submit", "--repo", "acme/api", "--image", "acme/api:1", "--wait", "--timeout", "500ms")
	if res.code != exitInfra {
		t.Fatalf("submit --wait exit = %d, want %d; stderr %q", res.code, exitInfra, res.stderr)
	}
	if !strings.Contains(res.stderr, "timed out") {
		t.Errorf("stderr = %q, want a timeout", res.stderr)
	}
	r.waitDepth(status, 1)
	if n := r.depth(execute); n != 1 {
		t.Errorf("depth(execute) = %d, want 1 (the job was submitted)", n)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
