// Command blacktree-hub runs the Blacktree hub: it consumes JobRequests from
// RabbitMQ, hands them to worker agents connected over gRPC and publishes
// their results. It only parses flags, builds the root logger and runs
// hub.Hub; see package hub.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/blacktree/blacktree/console"
	"github.com/blacktree/blacktree/hub"
	"github.com/blacktree/blacktree/internal/auth"
	"github.com/blacktree/blacktree/internal/cliflags"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/rabbit"
	"github.com/blacktree/blacktree/internal/tlsutil"
)

type options struct {
	grpcAddr, httpAddr                 string
	amqpURL, executeQueue, statusQueue string
	queueType                          string
	prefetch, lookahead                int
	placement                          hub.Placement
	cacheAffinity                      bool
	affinityWait                       time.Duration
	holdTimeout, lostWorkerGrace       time.Duration
	heartbeatInterval, drainTimeout    time.Duration
	maxHeartbeatInterval               time.Duration
	heartbeatGrid                      time.Duration
	maxHeartbeatRate                   float64
	workerTokens, adminTokenFile       string
	dispatchKeyFile                    string
	insecureNoAuth, pprof              bool
	console                            bool
	consoleTokenFile                   string
	tlsCert, tlsKey, tlsClientCA       string
	logging                            cliflags.Logging
	maxSessionsPerToken                int
	maxConns, maxConnsPerIP            int
	handshakeTimeout                   time.Duration
	unauthConnTimeout                  time.Duration
	maxStatusBytes                     int
	allowedPushPrefixes                string
	ledger                             bool
	ledgerQueue                        string
	ledgerRenew, ledgerTimeout         time.Duration
	eventsExchange                     string
	cancelQueue                        string
	cancelTombstoneTTL                 time.Duration
	maxCancelTombstones                int
}

const usageText = `blacktree-hub consumes JobRequests from RabbitMQ, pushes each to a connected
worker agent over gRPC and publishes the worker's JobResponse to the status queue.

Every flag can also be set through an environment variable named after it:
--amqp-url <-> BLACKTREE_AMQP_URL, --worker-tokens <-> BLACKTREE_WORKER_TOKENS.
The command line wins over the environment.

Examples:
  # local development, no authentication
  blacktree-hub --insecure-no-auth

  # production: tokens, TLS, quorum queues, JSON logs
  blacktree-hub --worker-tokens /etc/blacktree/workers --admin-token-file /etc/blacktree/admin \
    --tls-cert hub.crt --tls-key hub.key --queue-type quorum --log-json \
    --amqp-url amqp://blacktree:secret@rabbit:5672/

Every flag, its default and when to change it: docs/configuration.md.

Signals: SIGTERM/SIGINT drain (stop taking jobs, let running ones finish for
up to --drain-timeout, then stop); SIGHUP re-reads the token files and
closes the sessions of workers whose token it no longer contains.

Flags:
`

func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("blacktree-hub", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.grpcAddr, "grpc-addr", hub.DefaultGRPCAddr, "gRPC listen `address`: workers, admin API, health, reflection (admin token)")
	fs.StringVar(&o.httpAddr, "http-addr", hub.DefaultHTTPAddr, "HTTP listen `address` for /healthz, /readyz, /metrics and the console (/ui/)")
	fs.BoolVar(&o.pprof, "pprof", false, "also serve /debug/pprof/ on --http-addr (trusted networks only)")
	fs.BoolVar(&o.console, "console", true, "serve the operator console under /ui/ on --http-addr; the admin token logs in (false: no console)")
	fs.StringVar(&o.consoleTokenFile, "console-token-file", "", "`file` holding a token that logs in to the console read-only")
	fs.StringVar(&o.amqpURL, "amqp-url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ `url`, or the URLs of a cluster's nodes, comma-separated, tried in turn")
	fs.StringVar(&o.executeQueue, "execute-queue", "execute.queue", "`queue` JobRequests are consumed from")
	fs.StringVar(&o.statusQueue, "status-queue", "status.queue", "`queue` JobResponses are published to")
	fs.StringVar(&o.eventsExchange, "events-exchange", "", "topic `exchange` for live job events, e.g. blacktree.events (empty: no events)")
	fs.StringVar(&o.queueType, "queue-type", rabbit.QueueTypeClassic, "queue `type` declared: classic or quorum")
	fs.IntVar(&o.prefetch, "prefetch", rabbit.DefaultPrefetch, "most unacked deliveries this hub holds at once, whatever its free slots")
	fs.IntVar(&o.lookahead, "lookahead", hub.DefaultLookahead, "deliveries taken beyond the free slots while a slot is free (0: none)")
	fs.TextVar(&o.placement, "placement", hub.PlacementSpread, "which free worker gets a job: spread (least loaded first) or binpack (most loaded first)")
	fs.BoolVar(&o.cacheAffinity, "cache-affinity", true, "among the free workers, prefer one whose build cache is warm for the job (false: place ignoring caches)")
	fs.DurationVar(&o.affinityWait, "affinity-wait", 0, "how long a job waits for a busy worker with a warm cache before going to any free worker (0: never waits)")
	fs.IntVar(&o.maxStatusBytes, "max-status-bytes", hub.DefaultMaxStatusBytes, "largest status message in `bytes`; keep it under the broker's max_message_size")
	fs.DurationVar(&o.holdTimeout, "hold-timeout", hub.DefaultHoldTimeout, "how long a delivery waits for a free worker before it is requeued")
	fs.DurationVar(&o.lostWorkerGrace, "lost-worker-grace", hub.DefaultLostWorkerGrace, "how long a vanished worker may take to return before its jobs are reported lost")
	fs.BoolVar(&o.ledger, "ledger", true, "keep accepted jobs in the orphan ledger queue, so that one whose hub and worker both die is still reported lost")
	fs.StringVar(&o.ledgerQueue, "ledger-queue", "", "orphan ledger `queue`, shared by the hubs of a deployment (default: --execute-queue + \".ledger\")")
	fs.DurationVar(&o.ledgerRenew, "ledger-renew-interval", hub.DefaultLedgerRenewInterval, "how often the hub tells the orphan ledger which jobs it still answers for")
	fs.DurationVar(&o.ledgerTimeout, "ledger-timeout", 0, "how long a job may go unrenewed in the orphan ledger before it is reported lost (default: --lost-worker-grace + 3 × --ledger-renew-interval)")
	fs.StringVar(&o.cancelQueue, "cancel-queue", "cancel.queue", "`queue` control planes publish job cancels to, shared by the hubs of a deployment (empty: none)")
	fs.DurationVar(&o.cancelTombstoneTTL, "cancel-tombstone-ttl", hub.DefaultCancelTombstoneTTL, "how long a cancel for a job not yet delivered is remembered, to answer that job cancelled")
	fs.IntVar(&o.maxCancelTombstones, "max-cancel-tombstones", hub.DefaultMaxCancelTombstones, "most cancels for jobs not yet delivered remembered at once (the oldest are forgotten)")
	fs.DurationVar(&o.heartbeatInterval, "heartbeat-interval", hub.DefaultHeartbeatInterval, "heartbeat period of a small fleet; 3 missed = dead")
	fs.Float64Var(&o.maxHeartbeatRate, "max-heartbeat-rate", hub.DefaultMaxHeartbeatRate, "most heartbeats a second from the whole fleet; a larger fleet beats less often (0: no limit)")
	fs.DurationVar(&o.maxHeartbeatInterval, "max-heartbeat-interval", hub.DefaultMaxHeartbeatInterval, "longest heartbeat period --max-heartbeat-rate may set")
	fs.DurationVar(&o.heartbeatGrid, "heartbeat-grid", hub.DefaultHeartbeatGrid, "grid step workers align their heartbeats to, so they arrive in groups (0: off)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", hub.DefaultDrainTimeout, "how long SIGTERM waits for running jobs")
	fs.StringVar(&o.allowedPushPrefixes, "allowed-push-prefixes", "", "image `prefixes` (host[/path]) an imageName must be under, comma-separated (default: any)")
	fs.StringVar(&o.workerTokens, "worker-tokens", "", "`file` of worker tokens, one per line, `name:token` allowed")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "`file` holding the admin API token")
	fs.StringVar(&o.dispatchKeyFile, "dispatch-key-file", "", "`file` with the key that signs dispatch tickets, shared by the hubs of a deployment (default: derived from --amqp-url and the queues)")
	fs.BoolVar(&o.insecureNoAuth, "insecure-no-auth", false, "accept callers without credentials (development only)")
	fs.IntVar(&o.maxSessionsPerToken, "max-sessions-per-token", hub.DefaultMaxSessionsPerCred, "most workers connected at once with one token or client certificate")
	fs.IntVar(&o.maxConns, "max-conns", hub.DefaultMaxConns, "most gRPC connections open at once (0: no limit)")
	fs.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", hub.DefaultMaxConnsPerIP, "most gRPC connections open at once from one IP address (0: no limit)")
	fs.DurationVar(&o.handshakeTimeout, "handshake-timeout", hub.DefaultHandshakeTimeout, "how long a new connection may take for its TLS handshake and HTTP/2 preface")
	fs.DurationVar(&o.unauthConnTimeout, "unauthenticated-conn-timeout", hub.DefaultUnauthConnTimeout, "close a connection that made no authenticated call this long after it opened")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate `file` for the gRPC listener")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS key `file` for the gRPC listener")
	fs.StringVar(&o.tlsClientCA, "tls-client-ca", "", "CA `file` to verify worker client certificates (mTLS)")
	o.logging.Register(fs)
	cliflags.SetUsage(fs, usageText)
	return fs
}

// parse reads BLACKTREE_* environment fallbacks, then the command line.
func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := newFlagSet(o, stderr)
	if err := cliflags.Parse(fs, args, stderr); err != nil {
		return nil, err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if o.tlsClientCA != "" && o.tlsCert == "" {
		return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if o.maxHeartbeatInterval < o.heartbeatInterval {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "max-heartbeat-interval" })
		if explicit {
			return nil, fmt.Errorf("--max-heartbeat-interval %v is shorter than --heartbeat-interval %v", o.maxHeartbeatInterval, o.heartbeatInterval)
		}
		o.maxHeartbeatInterval = o.heartbeatInterval // the default follows a longer --heartbeat-interval
	}
	if o.affinityWait < 0 {
		return nil, fmt.Errorf("invalid --affinity-wait %v: want 0 (never wait) or more", o.affinityWait)
	}
	if o.heartbeatGrid < 0 {
		return nil, fmt.Errorf("invalid --heartbeat-grid %v: want 0 (off) or more", o.heartbeatGrid)
	}
	if o.maxHeartbeatRate < 0 {
		return nil, fmt.Errorf("invalid --max-heartbeat-rate %v: want 0 (off) or more", o.maxHeartbeatRate)
	}
	if o.lookahead < 0 {
		return nil, fmt.Errorf("invalid --lookahead %d: want 0 (none) or more", o.lookahead)
	}
	if o.maxSessionsPerToken < 1 {
		return nil, fmt.Errorf("invalid --max-sessions-per-token %d: want 1 or more", o.maxSessionsPerToken)
	}
	if o.maxConns < 0 || o.maxConnsPerIP < 0 {
		return nil, errors.New("invalid --max-conns or --max-conns-per-ip: want 0 (no limit) or more")
	}
	if o.handshakeTimeout <= 0 || o.unauthConnTimeout <= 0 {
		return nil, errors.New("invalid --handshake-timeout or --unauthenticated-conn-timeout: want more than 0")
	}
	if o.cancelTombstoneTTL <= 0 || o.maxCancelTombstones < 1 {
		return nil, errors.New("invalid --cancel-tombstone-ttl or --max-cancel-tombstones: want more than 0")
	}
	if o.ledgerRenew <= 0 || o.ledgerTimeout < 0 {
		return nil, errors.New("invalid --ledger-renew-interval or --ledger-timeout: want more than 0 (--ledger-timeout 0: the default)")
	}
	if o.ledgerTimeout > 0 && o.ledgerTimeout < 2*o.ledgerRenew {
		return nil, fmt.Errorf("--ledger-timeout %v is shorter than 2 × --ledger-renew-interval %v", o.ledgerTimeout, o.ledgerRenew)
	}
	if err := o.logging.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// authenticated tells whether the tap authenticated a call (health
// checks are not).
func authenticated(ctx context.Context) bool {
	_, ok := auth.IdentityFromContext(ctx)
	return ok
}

// sessionKey names the credential a worker stream authenticated with, for
// --max-sessions-per-token: a token's or certificate's fingerprint. Callers
// let in without credentials (--insecure-no-auth) are not counted.
func sessionKey(ctx context.Context) string {
	id, ok := auth.IdentityFromContext(ctx)
	if !ok || id.Fingerprint == "" {
		return ""
	}
	return id.Kind + ":" + id.Fingerprint
}

// noLimit maps a flag's 0 (no limit, or no lookahead) to hub.Config's
// negative.
func noLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func run(args []string, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "blacktree-hub: %v\n", err)
		return 2
	}
	logger, err := o.logging.Logger("blacktree-hub", stderr)
	if err != nil {
		fmt.Fprintf(stderr, "blacktree-hub: %v\n", err)
		return 2
	}
	fail := func(code int, err error) int {
		logger.Error("cannot start", "error", err)
		return code
	}

	// Auth: no tokens and no --insecure-no-auth is refused by auth.New.
	authn, err := auth.New(auth.Config{
		WorkerTokensFile:  o.workerTokens,
		AdminTokenFile:    o.adminTokenFile,
		ConsoleTokenFile:  o.consoleTokenFile,
		InsecureNoAuth:    o.insecureNoAuth,
		AllowMTLSIdentity: o.tlsClientCA != "",
	}, logger.Named("auth"))
	if err != nil {
		return fail(2, err)
	}
	deploymentID, dispatchKey, err := deployment(o)
	if err != nil {
		return fail(2, err)
	}
	if o.maxHeartbeatRate == 0 {
		o.maxHeartbeatRate = -1 // hub.Config: negative is off, zero the default
	}
	if o.heartbeatGrid == 0 {
		o.heartbeatGrid = -1 // likewise
	}
	pushScope, err := jobspec.ParsePushScope(strings.Split(o.allowedPushPrefixes, ","))
	if err != nil {
		return fail(2, fmt.Errorf("--allowed-push-prefixes: %w", err))
	}
	cfg := hub.Config{
		Policy:               jobspec.Policy{PushScope: pushScope},
		GRPCAddr:             o.grpcAddr,
		HTTPAddr:             o.httpAddr,
		Pprof:                o.pprof,
		ConsoleAuth:          consoleAuth(o, authn),
		HoldTimeout:          o.holdTimeout,
		Lookahead:            noLimit(o.lookahead),
		MaxStatusBytes:       o.maxStatusBytes,
		Placement:            o.placement,
		LostWorkerGrace:      o.lostWorkerGrace,
		CancelTombstoneTTL:   o.cancelTombstoneTTL,
		MaxCancelTombstones:  o.maxCancelTombstones,
		LedgerRenewInterval:  o.ledgerRenew,
		LedgerTimeout:        o.ledgerTimeout,
		DisableCacheAffinity: !o.cacheAffinity,
		AffinityWait:         o.affinityWait,
		HeartbeatInterval:    o.heartbeatInterval,
		DrainTimeout:         o.drainTimeout,
		MaxHeartbeatRate:     o.maxHeartbeatRate,
		MaxHeartbeatInterval: o.maxHeartbeatInterval,
		HeartbeatGrid:        o.heartbeatGrid,
		// Every call is authenticated from its headers, before any of its
		// messages is read (docs/SECURITY.md#limits).
		TapHandle:                  authn.TapHandle,
		Authenticated:              authenticated,
		SessionKey:                 sessionKey,
		MaxSessionsPerCredential:   o.maxSessionsPerToken,
		MaxConns:                   noLimit(o.maxConns),
		MaxConnsPerIP:              noLimit(o.maxConnsPerIP),
		HandshakeTimeout:           o.handshakeTimeout,
		UnauthenticatedConnTimeout: o.unauthConnTimeout,
		WorkerName: func(ctx context.Context) (string, bool) {
			id, ok := auth.IdentityFromContext(ctx)
			return id.Name, ok && id.Name != ""
		},
		Authorized: authn.StillAuthorized,
		Credential: func(ctx context.Context) string {
			id, _ := auth.IdentityFromContext(ctx)
			return credentialKey(id)
		},
		DeploymentID: deploymentID,
		DispatchKey:  dispatchKey,
	}
	if o.tlsCert != "" {
		if cfg.TLS, err = tlsutil.ServerConfig(o.tlsCert, o.tlsKey, o.tlsClientCA); err != nil {
			return fail(2, err)
		}
	} else if !tlsutil.IsLoopback(o.grpcAddr) {
		logger.Warn("INSECURE: gRPC listens on a non-loopback address without TLS; worker tokens and job secrets cross the network in clear text (use --tls-cert/--tls-key)", "grpc_addr", o.grpcAddr)
	}

	rc, err := rabbit.New(rabbit.Config{
		URL:            o.amqpURL,
		ExecuteQueue:   o.executeQueue,
		StatusQueue:    o.statusQueue,
		QueueType:      o.queueType,
		Prefetch:       o.prefetch,
		LedgerQueue:    o.ledgerQueue,
		DisableLedger:  !o.ledger,
		EventsExchange: o.eventsExchange,
		CancelQueue:    o.cancelQueue,
		Paced:          true,
		ConnectionName: "blacktree-hub",
	}, logger)
	if err != nil {
		return fail(2, err)
	}
	h, err := hub.New(cfg, rc, logger)
	if err != nil {
		return fail(2, err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	err = rc.Connect(cctx)
	cancel()
	if err != nil {
		return fail(1, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var wg sync.WaitGroup
	bctx, bcancel := context.WithCancel(context.Background())
	wg.Go(func() {
		if err := rc.Run(bctx); err != nil {
			logger.Error("broker client stopped", "error", err)
		}
	})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	wg.Go(func() {
		for {
			select {
			case <-bctx.Done():
				return
			case <-hup:
				if err := authn.Reload(); err != nil {
					logger.Error("reloading tokens failed; keeping the previous ones", "error", err)
				} else {
					logger.Info("tokens reloaded", "sessions_closed", h.CloseUnauthorized())
				}
			}
		}
	})

	runErr := h.Run(ctx)
	signal.Stop(hup)
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = rc.Shutdown(sctx)
	scancel()
	bcancel()
	wg.Wait()
	if runErr != nil {
		logger.Error("hub stopped with an error", "error", runErr)
		return 1
	}
	return 0
}

// consoleAuth is hub.Config.ConsoleAuth: authn, unless --console=false.
func consoleAuth(o *options, authn *auth.Authenticator) console.Authenticator {
	if !o.console {
		return nil
	}
	return authn
}
