package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"
	bkclient "github.com/moby/buildkit/client"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/workeragent/executor"
)

// Name is the --executor value of the docker executor.
const Name = "docker"

// Defaults for the zero values of Config.
const (
	DefaultGitBaseURL      = "https://github.com"
	DefaultLogTailBytes    = 64 << 10
	DefaultJobTimeout      = 30 * time.Minute
	DefaultMaxRepoBytes    = 1 << 30 // bytes received from the git server per clone
	DefaultMaxContextBytes = 1 << 30 // bytes of build context sent to the engine
	cleanupTimeout         = 30 * time.Second
	interruptGrace         = time.Second // for the engine to settle after an interrupted build
	cleanupAttempts        = 6
)

func init() {
	if err := executor.Register(Name, func(o executor.Options) (executor.Executor, error) {
		return New(ConfigFromOptions(o))
	}); err != nil {
		panic(err) // programming error at init, never at run time
	}
}

// ErrNoPushScope is returned by New for a configuration that names no
// push prefix (Registry, AllowedPushPrefixes) and does not set
// AllowAnyPush.
var ErrNoPushScope = errors.New("docker executor: no push scope: pass --registry or --allowed-push-prefixes (or --allow-any-push to push wherever the worker's registry credentials reach)")

// Config configures the docker executor. Zero values take the defaults.
type Config struct {
	// Logger receives the executor's own log lines (never the token).
	Logger hclog.Logger
	// GitBaseURL resolves `owner/name` repoUrls to GitBaseURL/owner/name.git.
	// It is trusted operator configuration: it may name any scheme among
	// http and https and any host, loopback included (tests, on-prem).
	GitBaseURL string
	// AllowedGitHosts are the hosts (optionally host:port) a full https
	// repoUrl may name, in addition to GitBaseURL's host.
	AllowedGitHosts []string
	// AllowPrivateGitHosts lets full repoUrls name loopback, private,
	// link-local and metadata hosts listed in AllowedGitHosts, and lets
	// clones connect to such addresses whatever name or redirect led
	// there. Off by default: then only GitBaseURL's host:port (and an
	// environment proxy) may be reached at a private address.
	AllowPrivateGitHosts bool
	// Registry is the prefix images are pushed under, e.g.
	// `registry.example.com/team`. Empty pushes imageName as given. It is
	// also a push prefix (AllowedPushPrefixes).
	Registry string
	// AllowedPushPrefixes are the image-name prefixes (`host[/path]`) a
	// job may push under, besides Registry; a job naming an image
	// elsewhere fails at validation and pushes nothing.
	AllowedPushPrefixes []string
	// AllowAnyPush lets a worker with no Registry and no
	// AllowedPushPrefixes push wherever its credentials reach. Without
	// it, New refuses such a configuration (ErrNoPushScope).
	AllowAnyPush bool
	// WorkDir is where per-job workspaces are created (os.TempDir if empty).
	WorkDir string
	// LogTailBytes bounds JobResponse.logs; head and tail are kept.
	LogTailBytes int
	// JobTimeout bounds a job whose request sets no timeout_seconds.
	JobTimeout time.Duration
	// MaxRepoBytes aborts a clone that receives more than this many bytes.
	MaxRepoBytes int64
	// MaxContextBytes aborts a build whose context is larger than this.
	MaxContextBytes int64
	// BuildNetwork is the network RUN steps get (ImageBuildOptions.
	// NetworkMode), e.g. "none" to cut untrusted builds off the network.
	// Empty means the engine's default (bridge).
	BuildNetwork string
	// Builder is BuilderBuildKit (the default: the BuildKit embedded in
	// the engine) or BuilderClassic (the engine's classic builder, for
	// engines without BuildKit).
	Builder string
	// CacheMaxSize bounds the engine's build cache in bytes (BuildKit
	// builder): after jobs, the least recently used cache is pruned down
	// to it. Zero is DefaultCacheMaxSize; negative never prunes.
	CacheMaxSize int64
	// Docker is the engine client to use; nil makes one from the
	// environment (DOCKER_HOST etc.) with API version negotiation, which
	// Close then closes.
	Docker *client.Client
}

// ConfigFromOptions maps the agent's executor.Options onto a Config.
func ConfigFromOptions(o executor.Options) Config {
	return Config{
		Logger:               o.Logger,
		GitBaseURL:           o.GitBaseURL,
		AllowedGitHosts:      o.AllowedGitHosts,
		AllowPrivateGitHosts: o.AllowPrivateGitHosts,
		Registry:             o.Registry,
		AllowedPushPrefixes:  o.AllowedPushPrefixes,
		AllowAnyPush:         o.AllowAnyPush,
		WorkDir:              o.WorkDir,
		LogTailBytes:         o.LogTailBytes,
		JobTimeout:           o.JobTimeout,
		BuildNetwork:         o.BuildNetwork,
		Builder:              o.Builder,
		CacheMaxSize:         o.CacheMaxSize,
	}
}

// Executor builds and pushes images with a Docker engine. It is safe for
// concurrent use.
type Executor struct {
	cfg        Config
	base       *url.URL
	policy     jobspec.Policy
	pushScope  jobspec.PushScope // empty only with AllowAnyPush
	docker     *client.Client
	ownsDocker bool
	log        hclog.Logger
	buildKit   *bkclient.Client  // nil with the classic builder
	bkAttrs    map[string]string // frontend attributes of every build
	pruner     *cachePruner      // nil when the cache is never pruned
	egress     *gitEgress        // where clones may connect
}

var _ executor.Executor = (*Executor)(nil)

// New validates cfg and returns an executor. It does no I/O: an
// unreachable engine shows up in the first job (and in Ping).
func New(cfg Config) (*Executor, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.GitBaseURL == "" {
		cfg.GitBaseURL = DefaultGitBaseURL
	}
	if cfg.LogTailBytes <= 0 {
		cfg.LogTailBytes = DefaultLogTailBytes
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = DefaultJobTimeout
	}
	if cfg.MaxRepoBytes <= 0 {
		cfg.MaxRepoBytes = DefaultMaxRepoBytes
	}
	if cfg.MaxContextBytes <= 0 {
		cfg.MaxContextBytes = DefaultMaxContextBytes
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = os.TempDir()
	}
	if cfg.Builder == "" {
		cfg.Builder = BuilderBuildKit
	}
	if cfg.CacheMaxSize == 0 {
		cfg.CacheMaxSize = DefaultCacheMaxSize
	}
	cfg.Registry = strings.TrimSuffix(cfg.Registry, "/")
	var bkAttrs map[string]string
	switch cfg.Builder {
	case BuilderClassic:
	case BuilderBuildKit:
		attrs, err := networkAttrs(cfg.BuildNetwork)
		if err != nil {
			return nil, fmt.Errorf("docker executor: %w", err)
		}
		bkAttrs = attrs
	default:
		return nil, fmt.Errorf("docker executor: unknown builder %q (want %s or %s)", cfg.Builder, BuilderBuildKit, BuilderClassic)
	}
	base, err := parseBaseURL(cfg.GitBaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.Registry != "" {
		if _, err := targetRef(cfg.Registry, "x"); err != nil {
			return nil, fmt.Errorf("docker executor: registry prefix %q is not a valid image name prefix", cfg.Registry)
		}
	}
	scope, err := jobspec.ParsePushScope(append([]string{cfg.Registry}, cfg.AllowedPushPrefixes...))
	if err != nil {
		return nil, fmt.Errorf("docker executor: %w", err)
	}
	if scope.Empty() && !cfg.AllowAnyPush {
		return nil, ErrNoPushScope
	}
	e := &Executor{cfg: cfg, base: base, log: cfg.Logger, bkAttrs: bkAttrs, pushScope: scope}
	e.policy = jobspec.Policy{
		AllowedHosts:      append([]string{strings.ToLower(base.Host)}, cfg.AllowedGitHosts...),
		AllowPrivateHosts: cfg.AllowPrivateGitHosts,
	}
	e.egress = newGitEgress(base, e.policy, cfg.AllowPrivateGitHosts)
	e.docker = cfg.Docker
	if e.docker == nil {
		c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("docker executor: docker client: %w", err)
		}
		e.docker, e.ownsDocker = c, true
	}
	if cfg.Builder == BuilderBuildKit {
		bk, err := newBuildKitClient(e.docker)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("docker executor: BuildKit client: %w", err)
		}
		e.buildKit = bk
		if cfg.CacheMaxSize > 0 {
			e.pruner = newCachePruner(engineCachePrune(e.docker, cfg.CacheMaxSize, cfg.Logger), cfg.Logger)
		}
	}
	installGitTransport()
	return e, nil
}

// Name implements executor.Executor.
func (e *Executor) Name() string { return Name }

// Ping checks that the Docker engine answers.
func (e *Executor) Ping(ctx context.Context) error {
	if _, err := e.docker.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine not reachable (is dockerd running? DOCKER_HOST=%q): %w", os.Getenv("DOCKER_HOST"), err)
	}
	return nil
}

// Close stops a running cache prune, releases the BuildKit client, the
// engine client if New made it, and idle git connections.
func (e *Executor) Close() error {
	e.egress.transport.CloseIdleConnections()
	if e.pruner != nil {
		e.pruner.close()
	}
	if e.buildKit != nil {
		_ = e.buildKit.Close() // its connections only; nothing to report
	}
	if e.ownsDocker {
		return e.docker.Close()
	}
	return nil
}

// stageError is a failure tied to a JobStage; its text starts with the
// stage in operator words ("clone: ...").
type stageError struct {
	stage blacktreev1.JobStage
	err   error
}

func (s *stageError) Error() string { return executor.StageWord(s.stage) + ": " + s.err.Error() }
func (s *stageError) Unwrap() error { return s.err }

// fail wraps err for stage; when ctx is done the cause (timeout or
// cancellation) replaces whatever the interrupted call reported.
func fail(ctx context.Context, stage blacktreev1.JobStage, err error) error {
	if ctx.Err() != nil {
		err = context.Cause(ctx)
		switch {
		case errors.Is(err, context.Canceled):
			err = errors.New("job cancelled")
		case errors.Is(err, context.DeadlineExceeded):
			err = errors.New("job timed out")
		}
	}
	return &stageError{stage: stage, err: err}
}

// result is what a successful pipeline produces.
type result struct {
	imageURL, digest string
	steps            stepCount
}

// Run implements executor.Executor.
func (e *Executor) Run(ctx context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	resp := &blacktreev1.JobResponse{JobId: req.GetJobId(), StartedAt: timestamppb.Now()}
	out := newJobOutput(logs, e.cfg.LogTailBytes, req.GetGithubToken())
	log := e.log.With("job_id", req.GetJobId())

	timeout := e.cfg.JobTimeout
	if s := req.GetTimeoutSeconds(); s > 0 {
		timeout = time.Duration(s) * time.Second
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("job timed out after %s", timeout))
	defer cancel()

	res, err := e.run(ctx, req, out, log)
	resp.CachedSteps = uint32(res.steps.cached)
	resp.TotalSteps = uint32(res.steps.total)
	if err != nil {
		msg := strings.ToValidUTF8(out.scrub(err.Error()), "\uFFFD")
		out.printf("%s\n", msg)
		resp.Error = msg
		resp.FailedStage = blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED
		var se *stageError
		if errors.As(err, &se) {
			resp.FailedStage = se.stage
		}
		log.Info("job failed", "stage", executor.StageWord(resp.FailedStage), "error", msg)
	} else {
		resp.Success = true
		resp.ImageUrl = res.imageURL
		resp.ImageDigest = res.digest
		log.Info("job succeeded", "image", res.imageURL, "digest", res.digest)
	}
	resp.Logs = out.kept()
	resp.FinishedAt = timestamppb.Now()
	return resp
}

func (e *Executor) run(ctx context.Context, req *blacktreev1.JobRequest, out *jobOutput, log hclog.Logger) (result, error) {
	const (
		validate = blacktreev1.JobStage_JOB_STAGE_VALIDATE
		clone    = blacktreev1.JobStage_JOB_STAGE_CLONE
		build    = blacktreev1.JobStage_JOB_STAGE_BUILD
		push     = blacktreev1.JobStage_JOB_STAGE_PUSH
	)
	// Request-level checks, all before any network or disk work.
	if err := jobspec.Validate(req, e.policy); err != nil {
		return result{}, &stageError{validate, err}
	}
	paths, err := checkRequestPaths(req.GetContextDir(), req.GetDockerfilePath())
	if err != nil {
		return result{}, &stageError{validate, err}
	}
	ref, err := targetRef(e.cfg.Registry, req.GetImageName())
	if err != nil {
		return result{}, &stageError{validate, err}
	}
	if !e.pushScope.Empty() {
		if err := e.pushScope.Check(ref); err != nil {
			return result{}, &stageError{validate, fmt.Errorf("imageName %q: %w", req.GetImageName(), err)}
		}
	}
	src, err := e.resolveRepo(req.GetRepoUrl())
	if err != nil {
		return result{}, &stageError{validate, err}
	}

	ws, err := os.MkdirTemp(e.cfg.WorkDir, "blacktree-job-")
	if err != nil {
		return result{}, &stageError{clone, fmt.Errorf("creating workspace: %w", err)}
	}
	defer func() {
		if err := os.RemoveAll(ws); err != nil {
			log.Error("removing workspace", "dir", ws, "error", err)
		}
	}()

	executor.EnterStage(ctx, clone)
	repoDir, err := e.clone(ctx, src, req.GetBranch(), req.GetGithubToken(), ws, out)
	if err != nil {
		return result{}, fail(ctx, clone, err)
	}
	resolved, err := paths.resolve(repoDir)
	if err != nil {
		return result{}, &stageError{validate, err}
	}
	if e.cfg.BuildNetwork == "none" {
		if err := checkOffline(resolved.dockerfile, resolved.dockerfileRel, req.GetBuildArgs()); err != nil {
			return result{}, &stageError{validate, err}
		}
	}

	if e.pruner != nil {
		defer e.pruner.request() // deferred first, so it runs after cleanup
	}
	executor.EnterStage(ctx, build)
	b := &buildRun{docker: e.docker, out: out, log: log, network: e.cfg.BuildNetwork}
	defer b.cleanup(context.WithoutCancel(ctx))
	var res result
	if e.buildKit != nil {
		res.steps, err = b.buildKit(ctx, buildKitJob{
			client:     e.buildKit,
			token:      req.GetGithubToken(),
			attrs:      e.bkAttrs,
			buildArgs:  req.GetBuildArgs(),
			maxContext: e.cfg.MaxContextBytes,
		}, resolved)
	} else {
		err = b.build(ctx, resolved, req.GetBuildArgs(), e.cfg.MaxContextBytes)
	}
	if err != nil {
		return res, fail(ctx, build, err)
	}
	if ctx.Err() != nil {
		// Cancelled or timed out during the build: push nothing.
		return res, fail(ctx, push, ctx.Err())
	}
	executor.EnterStage(ctx, push)
	// A push once started is not cut short by a cancel: it completes and
	// the job reports it, so that a cancel never leaves a tag behind a
	// cancelled status (docs/design/cancellation.md). A timeout or the
	// worker stopping still ends it.
	pushCtx, stopPush := executor.ShieldFromCancel(ctx)
	defer stopPush()
	res.digest, err = b.push(pushCtx, ref, ws)
	if err != nil {
		return res, fail(pushCtx, push, err)
	}
	res.imageURL = ref.String()
	return res, nil
}
