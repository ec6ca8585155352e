// Package executor defines the seam between the worker agent and the code
// that actually runs a job, and the registry that --executor selects from.
// The noop executor lives here; the docker executor in executor/docker.
// stage.go carries the stage a running job reached back to the agent
// (EnterStage), which journals it. cancel.go: the cause a cancelled job's
// context carries (CancelError) and ShieldFromCancel, which keeps a push
// from being cut short by a cancel.
package executor

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Executor runs jobs. Implementations are safe for concurrent use: the
// agent calls Run once per accepted job, up to its slot count at a time.
type Executor interface {
	// Name is the --executor value that selects this executor.
	Name() string
	// Run runs one job until it finishes or ctx is done, writing the job's
	// human-readable output to logs as it goes (the agent streams it to the
	// hub as JobLog chunks, scrubbing secrets). It always returns a
	// non-nil response whose JobId is req.JobId; on failure Success is false
	// and Error names the stage and the cause. Cancellation of ctx must stop
	// the work promptly and yield a failed response.
	Run(ctx context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse
}

// CacheInspector is implemented by executors whose builds leave a cache
// that later jobs can reuse. The agent reports what it returns to the hub
// (CacheSummary) so that the hub can place a job where its cache is warm.
type CacheInspector interface {
	// CacheState reports the base images present in the builder's engine
	// (e.g. `debian:12`) and the bytes its build cache takes on disk.
	CacheState(ctx context.Context) (baseImages []string, sizeBytes uint64, err error)
}

// Options is the agent configuration an executor may need. Each executor
// reads the fields it cares about and ignores the rest.
type Options struct {
	// Logger is the executor's logger (already named by the agent).
	Logger hclog.Logger
	// NoopDelay is how long the noop executor takes per job.
	NoopDelay time.Duration
	// NoopLines is how many lines of output the noop executor writes per
	// job, spread over NoopDelay.
	NoopLines int
	// GitBaseURL resolves `owner/name` repoUrls (default https://github.com).
	GitBaseURL string
	// AllowedGitHosts are the hosts a full https repoUrl may name, in
	// addition to GitBaseURL's host.
	AllowedGitHosts []string
	// AllowPrivateGitHosts lets AllowedGitHosts name loopback, private and
	// link-local addresses (on-prem git servers, tests).
	AllowPrivateGitHosts bool
	// BuildNetwork is the network RUN steps of a build use (e.g. "none" to
	// cut untrusted builds off the network). Empty is the engine's default.
	BuildNetwork string
	// Builder selects the docker executor's builder: "buildkit" (the
	// default) or "classic".
	Builder string
	// CacheMaxSize bounds the build cache in bytes; 0 is the executor's
	// default, negative never prunes.
	CacheMaxSize int64
	// Registry is the prefix images are pushed under, e.g.
	// `registry.example.com/team`. Empty pushes imageName as given.
	Registry string
	// AllowedPushPrefixes are more image-name prefixes (`host[/path]`)
	// jobs may push under, besides Registry.
	AllowedPushPrefixes []string
	// AllowAnyPush lets a docker executor with no push prefix push
	// wherever its credentials reach (refused otherwise).
	AllowAnyPush bool
	// WorkDir is where per-job workspaces are created (os.TempDir if empty).
	WorkDir string
	// LogTailBytes bounds JobResponse.logs (head and tail are kept).
	LogTailBytes int
	// JobTimeout bounds a job when its request sets no timeout.
	JobTimeout time.Duration
}

// Factory builds an executor from the agent's configuration.
type Factory func(Options) (Executor, error)

var (
	mu        sync.Mutex // guards factories
	factories = map[string]Factory{}
)

// Register makes a factory selectable by name. It is meant to be called
// from init functions or main; registering a name twice is an error.
func Register(name string, f Factory) error {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		return fmt.Errorf("executor %q registered twice", name)
	}
	factories[name] = f
	return nil
}

// New builds the executor registered under name.
func New(name string, opts Options) (Executor, error) {
	mu.Lock()
	f, ok := factories[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown executor %q (known: %v)", name, Names())
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	return f(opts)
}

// Names lists the registered executor names, sorted.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
