package hub

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"

	"github.com/blacktree/blacktree/console"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultGRPCAddr             = ":7070"
	DefaultHTTPAddr             = ":7071"
	DefaultHeartbeatInterval    = 5 * time.Second
	DefaultMissedHeartbeats     = 3
	DefaultMaxHeartbeatRate     = 1000
	DefaultMaxHeartbeatInterval = 20 * time.Second
	DefaultHeartbeatGrid        = 100 * time.Millisecond
	DefaultRegisterTimeout      = 10 * time.Second
	DefaultAcceptTimeout        = 10 * time.Second
	DefaultLostWorkerGrace      = 30 * time.Second
	DefaultHoldTimeout          = 5 * time.Second
	DefaultCancelTombstoneTTL   = 10 * time.Minute
	DefaultMaxCancelTombstones  = 100_000
	DefaultLookahead            = 2
	DefaultDeadRetention        = 5 * time.Minute
	DefaultDrainTimeout         = 30 * time.Second
	DefaultMaxRecvMsgSize       = 4 << 20
	DefaultMaxConcurrentStreams = 16
	DefaultSendQueue            = 64
	DefaultKeepaliveTime        = 30 * time.Second
	DefaultKeepaliveTimeout     = 10 * time.Second
	DefaultKeepaliveMinTime     = 5 * time.Second
	DefaultConnBufferSize       = 8 << 10
	DefaultPublishRetryMax      = 5 * time.Second
	DefaultMaxSessionsPerCred   = 1000
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultMaxHeaderListSize    = 16 << 10
	DefaultMaxRequestMsgSize    = 64 << 10
	DefaultMaxConns             = 20000
	DefaultMaxConnsPerIP        = 1000
	DefaultUnauthConnTimeout    = 30 * time.Second
	DefaultLedgerRenewInterval  = 5 * time.Second
	// DefaultMaxStatusBytes is RabbitMQ 4.x's default max_message_size
	// (16 MiB) less 1 MiB of headroom.
	DefaultMaxStatusBytes = 15 << 20
	// MinMaxStatusBytes is the smallest MaxStatusBytes: room for a failed
	// status that says the real one was too large.
	MinMaxStatusBytes = 4 << 10
)

// Config configures a Hub. The zero value of every optional field selects
// its default.
type Config struct {
	// GRPCAddr is the listen address of WorkerService, AdminService, health
	// and reflection. Default ":7070". Use "127.0.0.1:0" in tests.
	GRPCAddr string
	// HTTPAddr is the listen address of /healthz, /readyz and /metrics.
	// Default ":7071". "-" turns the HTTP server off.
	HTTPAddr string
	// Pprof also serves net/http/pprof under /debug/pprof/ on HTTPAddr. Off
	// by default: profiles expose internals, so only for trusted networks.
	Pprof bool
	// ConsoleAuth turns on the operator console under /ui/ on HTTPAddr
	// (package console) and checks its logins: the admin token acts, a
	// console token only views. nil: no console.
	ConsoleAuth console.Authenticator
	// HubID names this hub instance in Registered and logs. Default: a
	// random id.
	HubID string

	// HeartbeatInterval is how often workers must send Heartbeat (sent to
	// them in Registered) while the fleet is small. Default 5s.
	HeartbeatInterval time.Duration
	// MaxHeartbeatRate bounds the heartbeats per second the hub asks of its
	// whole fleet. While more than MaxHeartbeatRate × interval workers are
	// connected the interval doubles, up to MaxHeartbeatInterval, and the
	// workers that take updates are told (a HeartbeatInterval frame in
	// answer to their next heartbeat); it halves again once the fleet
	// would use at most 3/4 of the rate at the shorter interval. The cost
	// is slower detection of a stuck worker in a large fleet
	// (MissedHeartbeats × the interval); a silent network is still found
	// by keepalive. Default 1000 (the default 5s holds up to 5,000
	// workers, 10s up to 10,000). Negative: the interval never changes.
	MaxHeartbeatRate float64
	// MaxHeartbeatInterval caps the interval MaxHeartbeatRate stretches
	// to; keep it below KeepaliveTime, or keepalive pings start to add to
	// the heartbeats. Default 20s, or HeartbeatInterval if that is longer.
	MaxHeartbeatInterval time.Duration
	// HeartbeatGrid is sent to workers in Registered.heartbeat_grid: each
	// picks its heartbeats' phase within the interval among the multiples
	// of this step and keeps it on the wall clock. A fleet whose clocks
	// are in step (NTP) then sends its heartbeats in groups, about
	// MaxHeartbeatRate × HeartbeatGrid at a time, and the hub takes a
	// group with one wake-up instead of paying one per heartbeat (the
	// larger part of a heartbeat's cost). Default 100ms. Negative: off;
	// workers pick any phase.
	HeartbeatGrid time.Duration
	// MissedHeartbeats is how many intervals without any frame make a
	// worker dead. Default 3.
	MissedHeartbeats int
	// RegisterTimeout bounds the wait for a stream's first frame. Default 10s.
	RegisterTimeout time.Duration
	// AcceptTimeout bounds the wait for JobAccepted/JobRejected after
	// RunJob; past it the job is offered elsewhere. Default 10s.
	AcceptTimeout time.Duration
	// LostWorkerGrace is how long the jobs of a worker whose stream broke
	// wait for a session to report them before the hub publishes them as
	// lost (docs/protocol.md#lost-workers). Default 30s.
	LostWorkerGrace time.Duration
	// HoldTimeout is how long a delivery waits for a free worker before it
	// is nacked with requeue (docs/protocol.md#prefetch-and-holding).
	// Default 5s.
	HoldTimeout time.Duration
	// CancelTombstoneTTL is how long the hub remembers a cancel for a job
	// it does not hold, to answer that job cancelled if it is delivered
	// later (cancel.go). Default 10m.
	CancelTombstoneTTL time.Duration
	// MaxCancelTombstones caps the cancels remembered so; past it the
	// oldest is forgotten. Default 100000.
	MaxCancelTombstones int
	// LedgerRenewInterval is how often the hub publishes the jobs it still
	// answers for to the orphan ledger (docs/design/orphan-ledger.md),
	// when the Broker has one (Ledger). Default 5s.
	LedgerRenewInterval time.Duration
	// LedgerTimeout is how long the ledger's keeper waits without an event
	// on a job before it reports the job lost (the hub that answered for
	// it stopped renewing). Default LostWorkerGrace + 3 ×
	// LedgerRenewInterval; at least 2 × LedgerRenewInterval.
	LedgerTimeout time.Duration
	// Lookahead is how many deliveries beyond its free slots the hub takes
	// while it has a free slot, so that a slot freed next finds a job
	// already here; with no free slot it takes none
	// (docs/design/consumption.md). Default 2. Negative: none.
	Lookahead int
	// DeadRetention is how long dead workers stay visible. Default 5m.
	DeadRetention time.Duration
	// DrainTimeout bounds the drain Run performs when its ctx ends (Shutdown
	// uses its own ctx instead). Default 30s.
	DrainTimeout time.Duration
	// SendQueue is the allowance of frames queued for a worker beyond what
	// its slots account for: past SendQueue + 3 × slots queued frames (a
	// RunJob, a ResultAck and a CancelJob per slot can be due at once) a
	// worker whose sender has taken no frame for 10s is a slow reader and
	// is disconnected, and 32 times that many frames disconnect it in any
	// case. Default 64.
	SendQueue int
	// Placement chooses among the free workers that can take a job:
	// PlacementSpread (the default, least loaded first) or PlacementBinpack
	// (most loaded first).
	Placement Placement
	// DisableCacheAffinity places jobs without regard to the workers'
	// build caches. By default, among the free workers that can take a
	// job, one whose cache summary holds the job's build key
	// (jobspec.CacheKey) comes first, whatever Placement says of the rest.
	DisableCacheAffinity bool
	// MinProtocolVersion and MaxProtocolVersion are the worker protocol
	// versions the hub accepts (handshake.go); a Register outside them is
	// refused with FailedPrecondition. Defaults protover.Oldest and
	// protover.Current.
	MinProtocolVersion, MaxProtocolVersion uint32
	// AffinityWait is how long a job whose build key only busy workers
	// hold waits for one of them to free a slot before it goes to any free
	// worker; HoldTimeout counts from then. Default 0: a job never waits
	// for a warm worker while a cold one is free.
	AffinityWait time.Duration
	// PublishRetryMax caps the backoff between attempts to publish a
	// result whose publish failed. Default 5s.
	PublishRetryMax time.Duration
	// MaxStatusBytes bounds one status message's JSON body. The hub bounds
	// a result's fields to fit (logs to an eighth of it: JSON escaping can
	// make six bytes of one), and replaces a status still larger by a
	// failed one that says so. Keep it under the broker's
	// max_message_size. Default DefaultMaxStatusBytes.
	MaxStatusBytes int

	// MaxRecvMsgSize bounds one frame from a worker (a JobResult carries
	// logs). Default 4 MiB.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds streams per HTTP/2 connection; a worker
	// needs one. Default 16.
	MaxConcurrentStreams uint32
	// ConnBufferSize is the gRPC read and write buffer size per connection
	// (grpc-go defaults to 32 KiB each; docs/design/idle-worker-memory.md);
	// the write buffer is
	// shared (SharedWriteBuffer) so an idle worker holds little. Default 8 KiB.
	ConnBufferSize int
	// KeepaliveTime: the hub pings a worker connection idle this long.
	// Default 30s.
	KeepaliveTime time.Duration
	// KeepaliveTimeout: a ping unanswered this long closes the connection
	// (also TCP_USER_TIMEOUT). Default 10s.
	KeepaliveTimeout time.Duration
	// KeepaliveMinTime is EnforcementPolicy.MinTime: clients pinging more
	// often are cut off (too_many_pings). Must stay below the workers' ping
	// interval (grpc-go clients ping at most every 10s). Default 5s.
	KeepaliveMinTime time.Duration

	// HandshakeTimeout bounds a new connection's TLS handshake and HTTP/2
	// preface (grpc.ConnectionTimeout; grpc-go's default is 120s).
	// Default 10s.
	HandshakeTimeout time.Duration
	// MaxHeaderListSize bounds the headers of one call (grpc-go's default
	// is 16 MiB); a call over it is refused before it is looked at.
	// Default 16 KiB.
	MaxHeaderListSize uint32
	// MaxRequestMsgSize bounds every message the hub receives other than
	// a worker's stream frames (admin, health and reflection requests are
	// small); larger ones are refused undecoded. Default 64 KiB.
	MaxRequestMsgSize int
	// MaxConns and MaxConnsPerIP bound the gRPC connections open at once,
	// in all and from one remote IP; a connection over either is closed
	// as soon as it is accepted. Defaults 20,000 and 1,000; negative: no
	// limit.
	MaxConns      int
	MaxConnsPerIP int
	// UnauthenticatedConnTimeout closes a connection that has carried no
	// authenticated call (Authenticated) this long after it was accepted:
	// a health probe's connection, a client that never authenticates.
	// Only with Authenticated set. Default 30s.
	UnauthenticatedConnTimeout time.Duration

	// TLS, when set, serves gRPC over TLS (mTLS when it has ClientCAs).
	// nil means plaintext.
	TLS *tls.Config
	// TapHandle, when set, runs on each call's headers before grpc-go
	// creates its stream or reads a message (grpc.InTapHandle), e.g.
	// auth.Authenticator.TapHandle: a call it refuses costs no decoding.
	// The context it returns is the call's.
	TapHandle tap.ServerInHandle
	// Authenticated, when set, tells whether a call's context (after
	// TapHandle) carries authenticated credentials; the call's connection
	// then escapes UnauthenticatedConnTimeout. nil: connections are never
	// closed for it.
	Authenticated func(ctx context.Context) bool
	// StreamInterceptors and UnaryInterceptors run after panic recovery
	// and logging, e.g. auth.Authenticator's interceptors.
	StreamInterceptors []grpc.StreamServerInterceptor
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	// WorkerName, when set, returns the name a worker authenticated as
	// (from its token or certificate); a non-empty name overrides the name
	// the worker registers with. nil: the registered name is used.
	WorkerName func(ctx context.Context) (string, bool)
	// SessionKey, when set, returns a key naming the credential a worker
	// stream authenticated with (a token's or certificate's fingerprint);
	// "" leaves the stream uncounted. nil: sessions are not counted.
	SessionKey func(ctx context.Context) string
	// MaxSessionsPerCredential bounds the worker ids that hold a session
	// under one SessionKey at once; a Register past it is refused with
	// ResourceExhausted (a reconnect of a worker id already counted is
	// not). Default 1000.
	MaxSessionsPerCredential int
	// Authorized, when set, tells whether a worker stream's credentials
	// (its context) are still valid; Hub.CloseUnauthorized, called after
	// the credentials change (a token file reload), ends the sessions for
	// which it returns false. nil: sessions are never re-checked.
	Authorized func(ctx context.Context) bool
	// Credential, when set, returns a stable key for the credential a
	// worker stream was opened with (its token, or its certificate's
	// identity): a worker id belongs to one credential while it has a
	// live session or jobs at the hub, and dispatch tickets bind it. It
	// must give the same key on every hub of the deployment. nil: every
	// stream has the same credential.
	Credential func(ctx context.Context) string
	// DeploymentID names the deployment this hub belongs to (DeploymentID
	// derives one from the broker and queues). Default: one of this hub's
	// own, so that no other hub accepts its tickets.
	DeploymentID string
	// DispatchKey signs dispatch tickets; every hub of the deployment needs
	// the same one. Default: random, so that tickets of this process are
	// valid only until it stops.
	DispatchKey []byte

	// Policy is the validation policy for JobRequests.
	Policy jobspec.Policy
}

func (c Config) withDefaults() (Config, error) {
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.HubID == "" {
		c.HubID = "hub-" + newID()
	}
	if c.DeploymentID == "" {
		c.DeploymentID = DeploymentID(c.HubID, "", "")
	}
	if strings.Contains(c.DeploymentID, ".") {
		return c, errors.New("hub: DeploymentID may not contain '.'")
	}
	if len(c.DispatchKey) == 0 {
		c.DispatchKey = make([]byte, 32)
		if _, err := rand.Read(c.DispatchKey); err != nil {
			return c, fmt.Errorf("hub: dispatch key: %w", err)
		}
	}
	setDur(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	setDur(&c.MaxHeartbeatInterval, max(DefaultMaxHeartbeatInterval, c.HeartbeatInterval))
	if c.MaxHeartbeatRate == 0 {
		c.MaxHeartbeatRate = DefaultMaxHeartbeatRate
	}
	if c.HeartbeatGrid == 0 {
		c.HeartbeatGrid = DefaultHeartbeatGrid
	}
	setDur(&c.RegisterTimeout, DefaultRegisterTimeout)
	setDur(&c.AcceptTimeout, DefaultAcceptTimeout)
	setDur(&c.LostWorkerGrace, DefaultLostWorkerGrace)
	setDur(&c.HoldTimeout, DefaultHoldTimeout)
	setDur(&c.CancelTombstoneTTL, DefaultCancelTombstoneTTL)
	if c.MaxCancelTombstones == 0 {
		c.MaxCancelTombstones = DefaultMaxCancelTombstones
	}
	setDur(&c.LedgerRenewInterval, DefaultLedgerRenewInterval)
	setDur(&c.LedgerTimeout, c.LostWorkerGrace+3*c.LedgerRenewInterval)
	setDur(&c.DeadRetention, DefaultDeadRetention)
	setDur(&c.DrainTimeout, DefaultDrainTimeout)
	setDur(&c.PublishRetryMax, DefaultPublishRetryMax)
	setDur(&c.KeepaliveTime, DefaultKeepaliveTime)
	setDur(&c.KeepaliveTimeout, DefaultKeepaliveTimeout)
	setDur(&c.KeepaliveMinTime, DefaultKeepaliveMinTime)
	if c.MissedHeartbeats == 0 {
		c.MissedHeartbeats = DefaultMissedHeartbeats
	}
	if c.SendQueue == 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.Lookahead == 0 {
		c.Lookahead = DefaultLookahead
	}
	if c.MaxRecvMsgSize == 0 {
		c.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if c.MaxStatusBytes == 0 {
		c.MaxStatusBytes = DefaultMaxStatusBytes
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	setDur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDur(&c.UnauthenticatedConnTimeout, DefaultUnauthConnTimeout)
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	if c.MaxRequestMsgSize == 0 {
		c.MaxRequestMsgSize = DefaultMaxRequestMsgSize
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.MaxSessionsPerCredential == 0 {
		c.MaxSessionsPerCredential = DefaultMaxSessionsPerCred
	}
	if err := c.setProtocolRange(); err != nil {
		return c, err
	}
	if c.MaxSessionsPerCredential < 0 {
		return c, fmt.Errorf("hub: MaxSessionsPerCredential %d is negative", c.MaxSessionsPerCredential)
	}
	if c.ConnBufferSize == 0 {
		c.ConnBufferSize = DefaultConnBufferSize
	}
	for name, d := range map[string]time.Duration{
		"HeartbeatInterval":          c.HeartbeatInterval,
		"RegisterTimeout":            c.RegisterTimeout,
		"AcceptTimeout":              c.AcceptTimeout,
		"LostWorkerGrace":            c.LostWorkerGrace,
		"HoldTimeout":                c.HoldTimeout,
		"LedgerRenewInterval":        c.LedgerRenewInterval,
		"LedgerTimeout":              c.LedgerTimeout,
		"DeadRetention":              c.DeadRetention,
		"DrainTimeout":               c.DrainTimeout,
		"KeepaliveTime":              c.KeepaliveTime,
		"KeepaliveTimeout":           c.KeepaliveTimeout,
		"KeepaliveMinTime":           c.KeepaliveMinTime,
		"PublishRetryMax":            c.PublishRetryMax,
		"MaxHeartbeatInterval":       c.MaxHeartbeatInterval,
		"AffinityWait":               c.AffinityWait,
		"HandshakeTimeout":           c.HandshakeTimeout,
		"UnauthenticatedConnTimeout": c.UnauthenticatedConnTimeout,
	} {
		if d < 0 {
			return c, fmt.Errorf("hub: %s %v is negative", name, d)
		}
	}
	if c.LedgerTimeout < 2*c.LedgerRenewInterval {
		return c, fmt.Errorf("hub: LedgerTimeout %v is shorter than 2 × LedgerRenewInterval %v", c.LedgerTimeout, c.LedgerRenewInterval)
	}
	if !c.Placement.valid() {
		return c, fmt.Errorf("hub: unknown %v", c.Placement)
	}
	if c.MaxHeartbeatInterval < c.HeartbeatInterval {
		return c, fmt.Errorf("hub: MaxHeartbeatInterval %v is shorter than HeartbeatInterval %v", c.MaxHeartbeatInterval, c.HeartbeatInterval)
	}
	if c.MissedHeartbeats < 1 {
		return c, errors.New("hub: MissedHeartbeats must be at least 1")
	}
	if c.MaxStatusBytes < MinMaxStatusBytes {
		return c, fmt.Errorf("hub: MaxStatusBytes %d is below %d", c.MaxStatusBytes, MinMaxStatusBytes)
	}
	if c.SendQueue < 1 || c.MaxRecvMsgSize < 1024 {
		return c, errors.New("hub: SendQueue must be >= 1 and MaxRecvMsgSize >= 1024")
	}
	return c, nil
}
