// Command blacktree-worker is the Blacktree worker agent: it dials out to a
// hub, takes jobs and runs them with an executor (docker or noop). It only
// parses flags, builds the root logger and runs workeragent.Agent.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	"github.com/hashicorp/go-hclog"

	"github.com/blacktree/blacktree/internal/cliflags"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/protover"
	"github.com/blacktree/blacktree/internal/tlsutil"
	"github.com/blacktree/blacktree/workeragent"
	"github.com/blacktree/blacktree/workeragent/executor"

	// Registers the "docker" executor (the --executor default).
	_ "github.com/blacktree/blacktree/workeragent/executor/docker"
)

// benchNoJournalEnv, set to 1, turns the job journal off
// (workeragent.Config.DisableJournal): for btbench's measure of the
// journal's cost only, so it is no flag.
const benchNoJournalEnv = "BLACKTREE_BENCH_NO_JOURNAL"

// version is set at build time with -ldflags "-X main.version=...".
var version = workeragent.DefaultVersion

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure, aborted drain
	exitUsage   = 2 // bad flags or configuration
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// options are the parsed flags.
type options struct {
	hubs, tokenFile, name, labels, executor, gitBaseURL, allowedGitHosts string
	registry, stateDir, workDir, tlsCA, tlsCert, tlsKey, tlsServerName   string
	buildNetwork, builder, cacheMaxSize, allowedPushPrefixes             string
	slots, noopLines                                                     int
	noopDelay, jobTimeout, drainTimeout, connectTimeout                  time.Duration
	persistResultsAfter, logFlushInterval, cancelGrace                   time.Duration
	logging                                                              cliflags.Logging
	insecure, allowPrivateGitHosts, allowAnyPush                         bool

	protocolVersion uint
}

const usageHead = `blacktree-worker: the Blacktree worker agent.

It dials out to one or more hubs over gRPC (TLS by default), registers, and
runs the jobs it is given with an executor. Every flag can also be set by an
environment variable: --slots <-> BLACKTREE_SLOTS, --hub <-> BLACKTREE_HUB.
The worker token is read from --token-file or from BLACKTREE_WORKER_TOKEN.

SIGTERM (or SIGINT) drains: no new jobs, running jobs finish, results are
delivered, then the worker exits 0. A second signal aborts (exit 1).

Examples:
  # production: TLS with a private CA, two hub replicas, docker builds
  blacktree-worker --hub hub-a:7070,hub-b:7070 --tls-ca /etc/blacktree/ca.pem \
    --token-file /etc/blacktree/worker.token --slots 2 --labels arch=amd64 \
    --registry registry.example.com/team --state-dir /var/lib/blacktree-worker

  # local smoke test against a plaintext hub
  BLACKTREE_WORKER_TOKEN=dev blacktree-worker --insecure --executor noop --noop-delay 2s

Every flag, its default and when to change it: docs/configuration.md.

Flags:
`

// cacheMaxBytes parses --cache-max-size (binary units: 20GiB, 512m);
// 0 means never prune, which executor.Options spells as a negative size.
func cacheMaxBytes(v string) (int64, error) {
	n, err := units.RAMInBytes(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--cache-max-size %q: want a size such as 20GiB or 0", v)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}

func defaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/blacktree-worker"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "blacktree-worker")
	}
	return ""
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("blacktree-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host, _ := os.Hostname()
	fs.StringVar(&o.hubs, "hub", "127.0.0.1:7070", "hub `address`(es), comma-separated; tried in turn (failover)")
	fs.StringVar(&o.tokenFile, "token-file", "", "`file` holding the worker token (else env BLACKTREE_WORKER_TOKEN)")
	fs.StringVar(&o.name, "name", host, "worker `name` shown by the hub")
	fs.IntVar(&o.slots, "slots", 1, "how many jobs to run at once")
	fs.StringVar(&o.labels, "labels", "", "labels matched against a job's workerLabels, `k=v,...`")
	fs.StringVar(&o.executor, "executor", "docker", "executor: docker or noop")
	fs.DurationVar(&o.noopDelay, "noop-delay", 0, "how long each noop job takes")
	fs.UintVar(&o.protocolVersion, "protocol-version", uint(protover.Current), "worker protocol version to announce (tests; 0: none, as before versions)")
	fs.IntVar(&o.noopLines, "noop-log-lines", 0, "lines of output each noop job writes over --noop-delay")
	fs.StringVar(&o.gitBaseURL, "git-base-url", "https://github.com", "base `URL` that owner/name repoUrls resolve against")
	fs.StringVar(&o.allowedGitHosts, "allowed-git-hosts", "", "more `hosts` https repoUrls may name, comma-separated")
	fs.BoolVar(&o.allowPrivateGitHosts, "allow-private-git-hosts", false, "let git hosts be loopback or private addresses (on-prem git, tests)")
	fs.StringVar(&o.buildNetwork, "build-network", "", "docker `network` for RUN steps, e.g. none (default: the engine's)")
	fs.StringVar(&o.builder, "builder", "buildkit", "builder: buildkit (the engine's embedded BuildKit) or classic")
	fs.StringVar(&o.cacheMaxSize, "cache-max-size", "20GiB", "`size` the engine's build cache is pruned to after jobs (0: never)")
	fs.StringVar(&o.registry, "registry", "", "registry `prefix` images are pushed under, e.g. registry.example.com/team")
	fs.StringVar(&o.allowedPushPrefixes, "allowed-push-prefixes", "", "more image `prefixes` (host[/path]) jobs may push under, comma-separated")
	fs.BoolVar(&o.allowAnyPush, "allow-any-push", false, "with no --registry or --allowed-push-prefixes, push wherever the credentials reach")
	fs.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "`dir` for the stable worker id, unacknowledged results, running jobs and recent build keys")
	fs.DurationVar(&o.persistResultsAfter, "persist-results-after", workeragent.DefaultPersistResultsAfter,
		"write a result to --state-dir when its ack is this late (0: before sending)")
	fs.DurationVar(&o.logFlushInterval, "log-flush-interval", workeragent.DefaultLogFlushInterval,
		"send a job's output to the hub at most this often (0: every write at once)")
	fs.StringVar(&o.workDir, "work-dir", "", "`dir` for per-job workspaces (default: the system temp dir)")
	fs.DurationVar(&o.jobTimeout, "job-timeout", workeragent.DefaultJobTimeout, "time limit of a job whose request sets none")
	fs.DurationVar(&o.cancelGrace, "cancel-grace", workeragent.DefaultCancelGrace, "how long a cancelled job is given to stop before it is reported and abandoned")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", time.Minute, "at start-up, exit 1 if no hub answers within this (0: retry forever)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", time.Hour, "on SIGTERM, how long to wait for jobs and result acks")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "CA bundle `file` to verify the hub (default: system roots)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "client certificate `file` for mTLS")
	fs.StringVar(&o.tlsKey, "tls-key", "", "client key `file` for mTLS")
	fs.StringVar(&o.tlsServerName, "tls-server-name", "", "expected hub certificate `name` (default: the host in --hub)")
	fs.BoolVar(&o.insecure, "insecure", false, "connect without TLS (plaintext; development only)")
	o.logging.Register(fs)
	cliflags.SetUsage(fs, usageHead)
	return fs
}

// parse reads BLACKTREE_* environment fallbacks, then the command line.
func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := newFlagSet(o, stderr)
	if err := cliflags.Parse(fs, args, stderr); err != nil {
		return nil, err
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseLabels(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("invalid --labels entry %q: want key=value", kv)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

func readToken(o *options) (string, error) {
	if o.tokenFile == "" {
		return strings.TrimSpace(os.Getenv("BLACKTREE_WORKER_TOKEN")), nil
	}
	b, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s is empty", o.tokenFile)
	}
	return tok, nil
}

// tlsConfig builds the client TLS configuration (nil with --insecure).
func tlsConfig(o *options) (*tls.Config, error) {
	if o.insecure {
		if o.tlsCA != "" || o.tlsCert != "" || o.tlsKey != "" {
			return nil, errors.New("--insecure cannot be combined with --tls-ca, --tls-cert or --tls-key")
		}
		return nil, nil
	}
	return tlsutil.ClientConfig(o.tlsCA, o.tlsCert, o.tlsKey, o.tlsServerName)
}

func validationPolicy(o *options) (jobspec.Policy, error) {
	u, err := url.Parse(o.gitBaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return jobspec.Policy{}, fmt.Errorf("invalid --git-base-url %q: want an http(s) URL", o.gitBaseURL)
	}
	hosts := append([]string{strings.ToLower(u.Host)}, splitList(strings.ToLower(o.allowedGitHosts))...)
	return jobspec.Policy{AllowedHosts: hosts, AllowPrivateHosts: o.allowPrivateGitHosts}, nil
}

// setup turns options into an agent configuration, executor and root
// logger (writing to logOut). Its errors are usage errors (exit 2).
func setup(o *options, logOut io.Writer) (workeragent.Config, executor.Executor, hclog.Logger, error) {
	var cfg workeragent.Config
	logger, err := o.logging.Logger("blacktree-worker", logOut)
	if err != nil {
		return cfg, nil, nil, err
	}
	hubs := splitList(o.hubs)
	if len(hubs) == 0 {
		return cfg, nil, nil, errors.New("--hub is empty")
	}
	if o.slots < 1 {
		return cfg, nil, nil, fmt.Errorf("invalid --slots %d: want at least 1", o.slots)
	}
	if o.noopLines < 0 {
		return cfg, nil, nil, fmt.Errorf("invalid --noop-log-lines %d: want 0 or more", o.noopLines)
	}
	if o.persistResultsAfter < 0 {
		return cfg, nil, nil, fmt.Errorf("invalid --persist-results-after %s: want 0 or more", o.persistResultsAfter)
	}
	if o.cancelGrace <= 0 {
		return cfg, nil, nil, fmt.Errorf("invalid --cancel-grace %s: want more than 0", o.cancelGrace)
	}
	if o.logFlushInterval < 0 {
		return cfg, nil, nil, fmt.Errorf("invalid --log-flush-interval %s: want 0 or more", o.logFlushInterval)
	}
	logFlush := o.logFlushInterval
	if logFlush == 0 {
		logFlush = -1 // Config: negative sends every write at once
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return cfg, nil, nil, err
	}
	token, err := readToken(o)
	if err != nil {
		return cfg, nil, nil, err
	}
	tlsCfg, err := tlsConfig(o)
	if err != nil {
		return cfg, nil, nil, err
	}
	policy, err := validationPolicy(o)
	if err != nil {
		return cfg, nil, nil, err
	}
	cacheMax, err := cacheMaxBytes(o.cacheMaxSize)
	if err != nil {
		return cfg, nil, nil, err
	}
	exec, err := executor.New(o.executor, executor.Options{
		Logger:          logger.Named("executor"),
		NoopDelay:       o.noopDelay,
		NoopLines:       o.noopLines,
		GitBaseURL:      o.gitBaseURL,
		AllowedGitHosts: splitList(o.allowedGitHosts),
		BuildNetwork:    o.buildNetwork,
		Builder:         o.builder,
		CacheMaxSize:    cacheMax,

		AllowPrivateGitHosts: o.allowPrivateGitHosts,
		Registry:             o.registry,
		AllowedPushPrefixes:  splitList(o.allowedPushPrefixes),
		AllowAnyPush:         o.allowAnyPush,
		WorkDir:              o.workDir,
		LogTailBytes:         workeragent.DefaultResultLogBytes,
		JobTimeout:           o.jobTimeout,
	})
	if err != nil {
		return cfg, nil, nil, fmt.Errorf("--executor: %w", err)
	}
	if token == "" {
		logger.Warn("no worker token (--token-file or BLACKTREE_WORKER_TOKEN): only a hub running with --insecure-no-auth will accept this worker")
	}
	if exec.Name() == "docker" && o.buildNetwork != "none" {
		logger.Warn("build steps can reach the network, cloud metadata (169.254.169.254) and this host's addresses included: --build-network none cuts them off (docs/SECURITY.md)")
	}
	if o.insecure {
		logger.Warn("plaintext connection to the hub (--insecure): the worker token and job tokens cross the network unencrypted")
	}
	cfg = workeragent.Config{
		HubAddrs:   hubs,
		TLS:        tlsCfg,
		Insecure:   o.insecure,
		Token:      token,
		Name:       o.name,
		Labels:     labels,
		Slots:      o.slots,
		StateDir:   o.stateDir,
		Version:    version,
		JobTimeout: o.jobTimeout,
		Policy:     policy,

		CancelGrace: o.cancelGrace,

		InitialConnectTimeout:    o.connectTimeout,
		PersistResultsAfter:      o.persistResultsAfter,
		PersistResultsBeforeSend: o.persistResultsAfter == 0,
		LogFlushInterval:         logFlush,
		DisableJournal:           os.Getenv(benchNoJournalEnv) == "1",
	}
	// 0 speaks as a worker from before the handshake (the Config field's
	// own 0 means the current version).
	cfg.ProtocolVersion = uint32(o.protocolVersion)
	cfg.UnnumberedProtocol = o.protocolVersion == 0
	return cfg, exec, logger, nil
}

func run(args []string, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "blacktree-worker: %v\n", err)
		return exitUsage
	}
	cfg, exec, logger, err := setup(o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "blacktree-worker: %v\n", err)
		return exitUsage
	}
	if c, ok := exec.(io.Closer); ok {
		defer c.Close()
	}
	// An executor that can check its dependency (the docker engine) does
	// so now: unreachable at start-up is one clear line and exit 1.
	if p, ok := exec.(interface{ Ping(context.Context) error }); ok {
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.Ping(pctx)
		pcancel()
		if err != nil {
			fmt.Fprintf(stderr, "blacktree-worker: executor %s: %v\n", exec.Name(), err)
			return exitFailure
		}
	}

	agent, err := workeragent.New(cfg, exec, logger)
	if errors.Is(err, workeragent.ErrStateDirLocked) {
		fmt.Fprintf(stderr, "blacktree-worker: %v; give each worker on this host its own --state-dir\n", err)
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "blacktree-worker: %v\n", err)
		if errors.Is(err, workeragent.ErrConfig) {
			return exitUsage
		}
		return exitFailure // e.g. an unusable --state-dir
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	runDone := make(chan struct{})
	sigDone := make(chan struct{})
	go func() {
		defer close(sigDone)
		drained := make(chan struct{})
		first := true
		for {
			select {
			case <-runDone:
				if !first {
					<-drained
				}
				return
			case sig := <-sigs:
				if first {
					first = false
					logger.Info("signal received: draining; send it again to abort", "signal", sig.String(), "drain_timeout", o.drainTimeout)
					go func() {
						defer close(drained)
						dctx, dcancel := context.WithTimeout(context.Background(), o.drainTimeout)
						defer dcancel()
						_ = agent.Shutdown(dctx) // Run reports the outcome
					}()
					continue
				}
				logger.Warn("second signal: aborting running jobs", "signal", sig.String())
				cancel()
			}
		}
	}()
	err = agent.Run(ctx)
	close(runDone)
	<-sigDone
	if err != nil {
		logger.Error("worker stopped", "error", err)
		if hint := noHubHint(o, err); hint != "" {
			logger.Error(hint)
		}
		return exitFailure
	}
	if ctx.Err() != nil {
		return exitFailure // aborted by a second signal
	}
	return exitOK
}

// noHubHint names the likeliest transport mismatch when no hub ever
// accepted the worker: gRPC only reports "error reading server preface"
// (plaintext against TLS) or a broken pipe (no client certificate against
// mTLS).
func noHubHint(o *options, err error) string {
	switch {
	case !errors.Is(err, workeragent.ErrNoHub):
		return ""
	case o.insecure:
		return "hint: --insecure dials the hub in plaintext; a hub serving TLS (--tls-cert) drops such connections: drop --insecure and pass --tls-ca"
	case o.tlsCert == "":
		return "hint: if the hub requires client certificates (--tls-client-ca), pass --tls-cert and --tls-key"
	}
	return ""
}
