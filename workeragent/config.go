package workeragent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/protover"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultSlots             = 1
	DefaultKeepaliveTime     = 30 * time.Second
	DefaultKeepaliveTimeout  = 10 * time.Second
	DefaultBackoffMin        = 500 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultJobTimeout        = 1 * time.Hour
	DefaultCancelGrace       = 10 * time.Second
	DefaultRegisterTimeout   = 10 * time.Second
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultLogBufferBytes    = 1 << 20
	DefaultResultLogBytes    = 1 << 20
	DefaultVersion           = "0.1.0"

	// DefaultPersistResultsAfter is the default Config.PersistResultsAfter.
	DefaultPersistResultsAfter = 200 * time.Millisecond
	// DefaultLogFlushInterval is the default Config.LogFlushInterval.
	DefaultLogFlushInterval = 100 * time.Millisecond

	// MinKeepaliveTime is grpc-go's floor for the client keepalive time;
	// lower values are raised to it (by grpc and by New).
	MinKeepaliveTime = 10 * time.Second
	// MaxResultLogBytes is the largest ResultLogBytes: a result frame
	// stays well under the hub's default 4 MiB frame limit, which a larger
	// one would break the session on, again at every reconnect.
	MaxResultLogBytes = registerResultBudget
	// MaxLogChunk is the largest JobLog.data the agent sends (worker.proto).
	MaxLogChunk = 64 << 10
)

// Config configures an Agent. The zero value of every optional field means
// its default (see the constants above).
type Config struct {
	// HubAddrs are the hub addresses (host:port), tried in turn: after a
	// failed or broken session the agent moves on to the next one, so a
	// worker can fail over between hub replicas. At least one is required.
	HubAddrs []string
	// TLS is the client TLS configuration used to verify the hub (and to
	// present a client certificate for mTLS). It must be set unless
	// Insecure is true.
	TLS *tls.Config
	// Insecure allows plaintext connections when TLS is nil. Development
	// only: the worker token then crosses the network in the clear.
	Insecure bool
	// Token is the worker's bearer token, sent on Connect as the metadata
	// header `authorization: Bearer <token>`. Never logged.
	Token string
	// Name is the human-readable name sent in Register (default: host name).
	Name string
	// Labels are matched by the hub against JobRequest.worker_labels.
	Labels map[string]string
	// Slots is how many jobs run at once (default 1).
	Slots int
	// StateDir holds the stable worker id (file "worker-id", created on
	// first run) and the results no hub has acknowledged yet (directory
	// "results", one file per job, written atomically as PersistResultsAfter
	// says and removed on ResultAck), so that a restart loses neither; and
	// the build keys of the latest builds (file "cache-keys"), which the
	// hub places jobs by, since the engine's cache outlives the agent;
	// and the running jobs (file "jobs.journal"), which a restart reports
	// as interrupted (docs/design/worker-journal.md).
	// Empty means ephemeral: a new id per process, results kept in
	// memory only and no journal.
	StateDir string
	// PersistResultsAfter is how long a finished job's result may wait in
	// memory for the hub's ResultAck before it is written to StateDir. The
	// JobResult is sent at once; an ack within the delay (the usual case:
	// milliseconds) means the result never touches the disk. A result
	// still unacknowledged when its session ends, when it is produced with
	// no hub connected, or when Run returns is written at once. The price:
	// an agent killed (-9) within the delay after a job finished, whose
	// JobResult had not reached the hub, loses that result, and the hub
	// reports the job lost after its grace period.
	//
	//
	// Zero means DefaultPersistResultsAfter; negative is invalid. Without a
	// StateDir nothing is written either way.
	PersistResultsAfter time.Duration
	// PersistResultsBeforeSend writes every result before its JobResult is
	// sent, synchronously, instead (kill-safe, at the cost of a file write
	// and remove per job; blacktree-worker --persist-results-after 0).
	PersistResultsBeforeSend bool
	// DisableJournal stops recording running jobs in StateDir's job
	// journal (docs/design/worker-journal.md): a job running when the
	// agent is killed is then reported only by the hub, as lost, after its
	// lost-worker grace. For benchmarks that measure the journal's cost;
	// no flag sets it.
	DisableJournal bool
	// Version is the agent version sent in Register (default DefaultVersion).
	Version string
	// ProtocolVersion is the worker protocol version sent in Register
	// (default protover.Current); UnnumberedProtocol sends none, as
	// workers from before the version handshake did. Both let tests speak
	// as another release (--protocol-version).
	ProtocolVersion    uint32
	UnnumberedProtocol bool

	// KeepaliveTime is the gRPC client keepalive ping interval (default
	// 30s, at least 10s: grpc-go raises lower values). The hub's
	// keepalive EnforcementPolicy.MinTime must not be larger.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long a keepalive ping may go unanswered
	// before the connection is closed (default 10s).
	KeepaliveTimeout time.Duration
	// KeepalivePermitWithoutStream sends keepalive pings even with no
	// stream open (off by default; the agent's stream is always open while
	// connected).
	KeepalivePermitWithoutStream bool

	// BackoffMin and BackoffMax bound the jittered exponential backoff
	// between connection attempts (defaults 500ms and 30s).
	BackoffMin, BackoffMax time.Duration
	// InitialConnectTimeout, when positive, makes Run give up with
	// ErrNoHub if no hub has answered Registered within it after start
	// (an unreachable hub at start-up is an error, docs/configuration.md).
	// Once
	// registered, the agent reconnects forever. Zero retries forever.
	InitialConnectTimeout time.Duration
	// RegisterTimeout bounds the wait for Registered after Register
	// (default 10s).
	RegisterTimeout time.Duration
	// JobTimeout bounds a job whose request sets no timeout_seconds
	// (default 1h).
	JobTimeout time.Duration
	// CancelGrace is how long a job cancelled by the hub (CancelJob) is
	// given to stop once its context is cancelled; after it the agent
	// reports the job cancelled without waiting for its executor any
	// longer (a push under way is exempt: it completes). Default 10s.
	CancelGrace time.Duration
	// LogBufferBytes bounds the output buffered per job while the hub is
	// slow or unreachable; beyond it output is dropped and a note says how
	// much (default 1 MiB).
	LogBufferBytes int
	// ResultLogBytes bounds JobResponse.logs; head and tail are kept
	// around a "… N bytes truncated …" line (default 1 MiB).
	ResultLogBytes int
	// LogFlushInterval is how often a running job's output goes to the hub:
	// its first output leaves as a JobLog chunk at once, later output
	// gathers for this long between chunks (less when MaxLogChunk bytes
	// wait), and the rest leaves when the job ends, before its JobResult.
	// A chatty build then costs the hub and the worker one frame per
	// interval, not one per line (docs/protocol.md#job-output). Zero means
	// DefaultLogFlushInterval (100ms); negative sends every write at once.
	LogFlushInterval time.Duration
	// Policy validates each JobRequest before it runs (internal/jobspec).
	Policy jobspec.Policy
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("invalid worker agent config")

func (c *Config) setDefaults() {
	if c.Slots == 0 {
		c.Slots = DefaultSlots
	}
	if c.Name == "" {
		if h, err := os.Hostname(); err == nil {
			c.Name = h
		} else {
			c.Name = "worker"
		}
	}
	if c.ProtocolVersion == 0 {
		c.ProtocolVersion = protover.Current
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.KeepaliveTime == 0 {
		c.KeepaliveTime = DefaultKeepaliveTime
	}
	if c.KeepaliveTime < MinKeepaliveTime {
		c.KeepaliveTime = MinKeepaliveTime
	}
	if c.KeepaliveTimeout == 0 {
		c.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.RegisterTimeout == 0 {
		c.RegisterTimeout = DefaultRegisterTimeout
	}
	if c.PersistResultsAfter == 0 {
		c.PersistResultsAfter = DefaultPersistResultsAfter
	}
	if c.JobTimeout == 0 {
		c.JobTimeout = DefaultJobTimeout
	}
	if c.CancelGrace == 0 {
		c.CancelGrace = DefaultCancelGrace
	}
	if c.LogBufferBytes == 0 {
		c.LogBufferBytes = DefaultLogBufferBytes
	}
	if c.ResultLogBytes == 0 {
		c.ResultLogBytes = DefaultResultLogBytes
	}
	if c.LogFlushInterval == 0 {
		c.LogFlushInterval = DefaultLogFlushInterval
	}
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case len(c.HubAddrs) == 0:
		return bad("no hub address")
	case c.TLS == nil && !c.Insecure:
		return bad("no TLS configuration; set one or allow plaintext explicitly (--insecure)")
	case c.TLS != nil && c.Insecure:
		return bad("both TLS and insecure (plaintext) are set")
	case c.Slots < 1:
		return bad("slots must be at least 1, got %d", c.Slots)
	case c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin:
		return bad("backoff min %s / max %s out of order", c.BackoffMin, c.BackoffMax)
	case c.KeepaliveTimeout < 0 || c.RegisterTimeout < 0 || c.JobTimeout < 0 || c.InitialConnectTimeout < 0 || c.CancelGrace < 0:
		return bad("negative timeout")
	case c.LogBufferBytes < MaxLogChunk:
		return bad("log buffer must be at least %d bytes", MaxLogChunk)
	case c.ResultLogBytes < 0 || c.ResultLogBytes > MaxResultLogBytes:
		return bad("result log bound %d outside 0..%d", c.ResultLogBytes, MaxResultLogBytes)
	case c.PersistResultsAfter < 0:
		return bad("negative persist-results-after delay %s", c.PersistResultsAfter)
	}
	for i, a := range c.HubAddrs {
		if a == "" {
			return bad("hub address %d is empty", i)
		}
	}
	return nil
}
