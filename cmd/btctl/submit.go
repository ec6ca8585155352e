package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cliflags"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// waitHold bounds how many other jobs' statuses `submit --wait` holds
// (unacked, to hand back) while it looks for its own.
const waitHold = 1000

const usageSubmit = `Usage: btctl submit [flags]

Publish one JobRequest to execute.queue (persistent, publisher-confirmed,
mandatory: a missing queue is an error). The request is built from flags, or
read from --file (JSON as on the queue) with any flags given overriding the
file. It is validated as the hub would (docs/protocol.md#validation) before
anything is published: an invalid request is a usage error (exit 2).
Without --wait btctl prints the job id and exits 0 once the broker has
confirmed the message.

The git token comes from --token-file, else BLACKTREE_GITHUB_TOKEN, else the
file's githubToken. It is never printed.

--wait and status.queue: status.queue belongs to the control plane, and a
RabbitMQ queue cannot be read without taking messages from it (there is no
peek, and statuses reach it through the default exchange, so no second queue
can be bound to get copies). --wait therefore consumes status.queue like
this:
  - it acks only the status whose jobId is its own (and prints that
    JobResponse as JSON);
  - every other job's status it receives is held unacked, never nacked one
    by one (requeueing at once would make a lone consumer spin on the same
    messages), and all of them go back to the queue, in their order, the
    moment btctl has its answer, gives up, or dies (RabbitMQ requeues a closed
    channel's unacked messages). Nothing is lost; the others are delayed by
    at most the wait and come back marked redelivered;
  - if a control plane consumes status.queue at the same time, RabbitMQ may
    hand it our status instead: --wait then times out (exit 3). Use --wait
    for development and operations, not from inside the control plane;
  - it holds at most 1000 other statuses; past that it gives up (exit 3)
    rather than churn the queue. Keep --timeout below the broker's
    consumer_timeout (30 min by default).

Exit status: 0 job succeeded (or submitted, without --wait), 1 job failed,
2 usage error or invalid request, 3 broker unreachable, queue missing,
timeout.

Examples:
  btctl submit --repo acme/api --branch main --image acme/api:1.2 --wait
  btctl submit --repo https://github.com/acme/api --context services/api \
      --dockerfile services/api/Dockerfile --image acme/api:dev \
      --token-file ~/.config/blacktree/github.token --label arch=arm64
  BLACKTREE_GITHUB_TOKEN=ghp_... btctl submit --file job.json --job-id retry-42 --wait --timeout 20m
`

type submitFlags struct {
	file          string
	jobID         string
	repo          string
	branch        string
	dockerfile    string
	contextDir    string
	image         string
	tokenFile     string
	labels        labelsFlag
	buildArgs     buildArgsFlag
	jobTimeout    time.Duration
	correlationID string
	allowedHosts  string
	allowPrivate  bool
	skipValidate  bool
	wait          bool
	timeout       time.Duration
}

func runSubmit(ctx context.Context, args []string, e env) error {
	fs, c := newFlagSet("submit", usageSubmit, e)
	f := submitFlags{labels: labelsFlag{}, buildArgs: buildArgsFlag{}}
	fs.StringVar(&f.file, "file", "", "read the JobRequest from this JSON `file` (the execute.queue format)")
	fs.StringVar(&f.jobID, "job-id", "", "job id (default: btctl-<UTC time>-<random>)")
	fs.StringVar(&f.repo, "repo", "", "repository: owner/name or https:// URL (required)")
	fs.StringVar(&f.branch, "branch", "", "branch or tag (default: the repository's default branch)")
	fs.StringVar(&f.dockerfile, "dockerfile", "", "Dockerfile path relative to the repository root (default: Dockerfile in --context)")
	fs.StringVar(&f.contextDir, "context", "", "build context directory relative to the repository root (default .)")
	fs.StringVar(&f.image, "image", "", "image reference to build and push, e.g. myapp:latest (required)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the git token [else BLACKTREE_GITHUB_TOKEN]")
	fs.Var(f.labels, "label", "worker label the job requires, key=value (repeatable)")
	fs.Var(f.buildArgs, "build-arg", "value of a Dockerfile ARG, NAME=VALUE (repeatable)")
	fs.DurationVar(&f.jobTimeout, "job-timeout", 0, "upper bound on the job's run time (default: the worker's)")
	fs.StringVar(&f.correlationID, "correlation-id", "", "AMQP correlation_id; the hub copies it to the status message")
	fs.StringVar(&f.allowedHosts, "allowed-hosts", cliflags.EnvOr(e.getenv, "BLACKTREE_ALLOWED_GIT_HOSTS", ""), "comma-separated hosts an https repo URL may name, as the hub allows (default github.com) [BLACKTREE_ALLOWED_GIT_HOSTS]")
	fs.BoolVar(&f.allowPrivate, "allow-private-hosts", false, "let --allowed-hosts name loopback/private addresses (on-prem git)")
	fs.BoolVar(&f.skipValidate, "skip-validate", false, "publish without validating (to test how the hub reports invalid requests)")
	fs.BoolVar(&f.wait, "wait", false, "wait for the job's status and print its JobResponse (see above)")
	fs.DurationVar(&f.timeout, "timeout", 15*time.Minute, "with --wait: how long to wait for the status")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("submit takes no arguments, got %q (see btctl submit --help)", pos[0])
	}
	req, err := f.request(fs, e)
	if err != nil {
		return err
	}
	if !f.skipValidate {
		policy := jobspec.Policy{AllowPrivateHosts: f.allowPrivate}
		for _, h := range strings.Split(f.allowedHosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				policy.AllowedHosts = append(policy.AllowedHosts, h)
			}
		}
		if err := jobspec.Validate(req, policy); err != nil {
			return usageErr("%v (nothing was published)", err)
		}
	}
	body, err := jobspec.EncodeRequest(req)
	if err != nil {
		return usageErr("%v", err)
	}

	a, err := dialAMQP(c)
	if err != nil {
		return err
	}
	defer a.close()
	if _, err := a.inspect(c.executeQueue, "--execute-queue"); err != nil {
		return err
	}
	if f.wait {
		// Check before publishing: a job we could not wait for should not
		// be submitted.
		if _, err := a.inspect(c.statusQueue, "--status-queue"); err != nil {
			return err
		}
	}
	pubCtx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	err = a.publishRequest(pubCtx, c.executeQueue, body, req.GetJobId(), f.correlationID)
	cancel()
	if err != nil {
		return err
	}
	if !f.wait {
		fmt.Fprintln(e.stdout, req.GetJobId())
		return nil
	}
	fmt.Fprintf(e.stderr, "btctl: submitted job %s to %s; waiting up to %s for its status on %s\n", req.GetJobId(), c.executeQueue, f.timeout, c.statusQueue)
	waitCtx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := waitStatus(waitCtx, a, c.statusQueue, req.GetJobId())
	if err != nil {
		if ctx.Err() != nil {
			return infraErr("interrupted while waiting for the status of job %s (it was submitted)", req.GetJobId())
		}
		return err
	}
	out, err := jobspec.EncodeResponse(resp)
	if err != nil {
		return infraErr("%v", err)
	}
	fmt.Fprintln(e.stdout, indentJSON(out))
	if !resp.GetSuccess() {
		return failedErr("job %s failed: %s", resp.GetJobId(), oneLine(resp.GetError()))
	}
	return nil
}

// request builds the JobRequest from --file and the flags given.
func (f *submitFlags) request(fs *flag.FlagSet, e env) (*blacktreev1.JobRequest, error) {
	req := &blacktreev1.JobRequest{}
	if f.file != "" {
		b, err := os.ReadFile(f.file)
		if err != nil {
			return nil, usageErr("read --file: %v", pathErr(err))
		}
		r, _, err := jobspec.DecodeRequest(b)
		if err != nil {
			return nil, usageErr("--file %s: %v", f.file, err)
		}
		req = r
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	apply := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	apply("job-id", &req.JobId, f.jobID)
	apply("repo", &req.RepoUrl, f.repo)
	apply("branch", &req.Branch, f.branch)
	apply("dockerfile", &req.DockerfilePath, f.dockerfile)
	apply("context", &req.ContextDir, f.contextDir)
	apply("image", &req.ImageName, f.image)
	if len(f.labels) > 0 {
		req.WorkerLabels = f.labels
	}
	if len(f.buildArgs) > 0 {
		req.BuildArgs = f.buildArgs
	}
	if set["job-timeout"] {
		if f.jobTimeout < 0 || f.jobTimeout%time.Second != 0 {
			return nil, usageErr("--job-timeout must be a whole number of seconds, got %s", f.jobTimeout)
		}
		req.TimeoutSeconds = uint32(f.jobTimeout / time.Second)
	}
	switch {
	case f.tokenFile != "":
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, usageErr("read --token-file: %v", pathErr(err))
		}
		req.GithubToken = strings.TrimSpace(string(b))
	case e.getenv("BLACKTREE_GITHUB_TOKEN") != "":
		req.GithubToken = strings.TrimSpace(e.getenv("BLACKTREE_GITHUB_TOKEN"))
	}
	if req.GetJobId() == "" {
		req.JobId = newJobID()
	}
	if f.file == "" {
		var missing []string
		if req.GetRepoUrl() == "" {
			missing = append(missing, "--repo")
		}
		if req.GetImageName() == "" {
			missing = append(missing, "--image")
		}
		if len(missing) > 0 {
			return nil, usageErr("submit needs %s (or --file; see btctl submit --help)", strings.Join(missing, " and "))
		}
	}
	return req, nil
}

// newJobID makes a job id that sorts by time and is unique enough for
// hand-submitted jobs: btctl-20260102T150405Z-1a2b3c4d.
func newJobID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "btctl-" + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
