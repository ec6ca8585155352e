package rabbit

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Queue types accepted by Config.QueueType.
const (
	QueueTypeClassic = "classic"
	QueueTypeQuorum  = "quorum"
)

// Defaults applied by New.
const (
	DefaultPrefetch       = 32
	DefaultReconnectMin   = 100 * time.Millisecond
	DefaultReconnectMax   = 10 * time.Second
	DefaultConnectionName = "blacktree"
	DeadLetterSuffix      = ".dead"
	AdoptionSuffix        = ".adoptions"
	LedgerSuffix          = ".ledger"
	DefaultRPCTimeout     = 15 * time.Second
	DefaultHeartbeat      = 10 * time.Second
)

// Config configures a Client. The zero value of every optional field selects
// its default.
type Config struct {
	// URL is the AMQP URL, e.g. amqp://guest:guest@127.0.0.1:5672/, or
	// several separated by commas: nodes of one RabbitMQ cluster, dialled
	// in turn (SplitURLs, nodes.go). Required.
	URL string
	// ExecuteQueue is the queue JobRequests are consumed from. Required.
	ExecuteQueue string
	// StatusQueue is the queue JobResponses are published to. Required.
	StatusQueue string
	// QueueType is "classic" (default) or "quorum"; it becomes the
	// x-queue-type argument of every queue the Client declares.
	QueueType string
	// Prefetch bounds the consumer prefetch window (basic.qos, per
	// consumer): at most this many deliveries are unacked at once. Unpaced,
	// it is the window; paced, it caps SetWindow's. Default 32.
	Prefetch int
	// Paced starts the consumer paused: it consumes only while the window
	// last given to SetWindow is positive (docs/design/consumption.md).
	Paced bool
	// DeadLetterQueue receives messages of ExecuteQueue that are nacked
	// without requeue. Default ExecuteQueue+".dead". Ignored when
	// DisableDeadLetter is set.
	DeadLetterQueue string
	// DisableDeadLetter declares ExecuteQueue without a dead-letter
	// exchange: rejected messages are then dropped by the broker.
	DisableDeadLetter bool
	// ConnectionName prefixes the client-provided connection names
	// (connection_name property) shown in the management UI and rabbitmqctl:
	// "<prefix>-consume" and "<prefix>-publish". Default "blacktree".
	ConnectionName string
	// ReconnectMin and ReconnectMax bound the jittered exponential backoff
	// between reconnect attempts. Defaults 100ms and 10s.
	ReconnectMin, ReconnectMax time.Duration
	// ConsumerTag is the consumer tag; empty lets the library generate one.
	ConsumerTag string
	// AdoptionExchange is the fanout exchange on which hub replicas announce
	// the jobs they adopt from reconnecting workers (broker.Adoption); each
	// Client binds an exclusive queue of its own to it. Default
	// ExecuteQueue+".adoptions", so replicas sharing an execute queue share
	// it.
	AdoptionExchange string
	// LedgerQueue holds the liveness events of accepted jobs, which every
	// hub replica publishes and one consumes at a time
	// (x-single-active-consumer; docs/design/orphan-ledger.md). Default
	// ExecuteQueue+".ledger", so replicas sharing an execute queue share
	// it. Ignored when DisableLedger is set.
	LedgerQueue string
	// CancelQueue is the durable queue control planes publish cancels to
	// ({"jobId","reason"}); every hub replica consumes it and passes each
	// cancel on to all of them on AdoptionExchange. Empty: no cancel queue.
	CancelQueue string
	// DisableLedger turns the ledger queue off: LedgerEnabled reports
	// false and nothing is declared, published or consumed for it.
	DisableLedger bool
	// EventsExchange is the durable topic exchange job events are
	// published to (events.go; docs/protocol.md#job-events). Empty: no
	// events.
	EventsExchange string
	// RPCTimeout bounds each exchange with the broker that amqp091 does not
	// bound itself: the TCP dial plus AMQP handshake, and each setup or
	// teardown call (channel open, queue declare, qos, consume, cancel,
	// close). A broker that takes a connection but does not answer within
	// it (still booting, a silent network) has the connection dropped, and
	// the reconnect loop dials again. Publishes are not bounded by it: a
	// publisher blocked by a resource alarm waits, as it should. Default 15s.
	RPCTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval the Client asks for (the
	// broker may lower it). A connection on which nothing arrives for three
	// intervals is dropped and dialled again. Default 10s.
	Heartbeat time.Duration
}

// withDefaults validates cfg and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.URL == "" {
		return cfg, errors.New("rabbit: URL is required")
	}
	if _, err := SplitURLs(cfg.URL); err != nil {
		return cfg, err
	}
	if cfg.ExecuteQueue == "" {
		return cfg, errors.New("rabbit: ExecuteQueue is required")
	}
	if cfg.StatusQueue == "" {
		return cfg, errors.New("rabbit: StatusQueue is required")
	}
	if cfg.ExecuteQueue == cfg.StatusQueue {
		return cfg, errors.New("rabbit: ExecuteQueue and StatusQueue must differ")
	}
	switch cfg.QueueType {
	case "":
		cfg.QueueType = QueueTypeClassic
	case QueueTypeClassic, QueueTypeQuorum:
	default:
		return cfg, fmt.Errorf("rabbit: QueueType %q: want %q or %q", cfg.QueueType, QueueTypeClassic, QueueTypeQuorum)
	}
	if cfg.Prefetch < 0 || cfg.Prefetch > 65535 {
		return cfg, fmt.Errorf("rabbit: Prefetch %d out of range 1..65535", cfg.Prefetch)
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if cfg.DisableDeadLetter {
		cfg.DeadLetterQueue = ""
	} else if cfg.DeadLetterQueue == "" {
		cfg.DeadLetterQueue = cfg.ExecuteQueue + DeadLetterSuffix
	}
	if cfg.DeadLetterQueue != "" && (cfg.DeadLetterQueue == cfg.ExecuteQueue || cfg.DeadLetterQueue == cfg.StatusQueue) {
		return cfg, errors.New("rabbit: DeadLetterQueue must differ from ExecuteQueue and StatusQueue")
	}
	if cfg.ConnectionName == "" {
		cfg.ConnectionName = DefaultConnectionName
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = DefaultReconnectMin
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = DefaultReconnectMax
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		cfg.ReconnectMax = cfg.ReconnectMin
	}
	if cfg.AdoptionExchange == "" {
		cfg.AdoptionExchange = cfg.ExecuteQueue + AdoptionSuffix
	}
	if cfg.DisableLedger {
		cfg.LedgerQueue = ""
	} else if cfg.LedgerQueue == "" {
		cfg.LedgerQueue = cfg.ExecuteQueue + LedgerSuffix
	}
	if cfg.LedgerQueue != "" && (cfg.LedgerQueue == cfg.ExecuteQueue || cfg.LedgerQueue == cfg.StatusQueue || cfg.LedgerQueue == cfg.DeadLetterQueue) {
		return cfg, errors.New("rabbit: LedgerQueue must differ from the other queues")
	}
	if cfg.CancelQueue != "" && (cfg.CancelQueue == cfg.ExecuteQueue || cfg.CancelQueue == cfg.StatusQueue || cfg.CancelQueue == cfg.DeadLetterQueue || cfg.CancelQueue == cfg.LedgerQueue) {
		return cfg, errors.New("rabbit: CancelQueue must differ from the other queues")
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = DefaultRPCTimeout
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	return cfg, nil
}

// MaskURL returns rawURL with its password replaced by "***", for logs and
// error messages; in a comma-separated list (SplitURLs), every URL's. A URL
// that does not parse is replaced entirely, since it may still carry a
// secret.
func MaskURL(rawURL string) string {
	if strings.Contains(rawURL, ",") {
		return maskURLList(rawURL)
	}
	return maskOneURL(rawURL)
}

func maskOneURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		// Without a scheme it may be a fragment of a password that held
		// a comma.
		return "<unparseable url>"
	}
	if u.User == nil {
		return u.String()
	}
	if _, has := u.User.Password(); !has {
		return u.String()
	}
	// url.UserPassword would percent-encode "*"; mask via a placeholder.
	const placeholder = "BTMASKEDPASSWORD"
	u.User = url.UserPassword(u.User.Username(), placeholder)
	return strings.Replace(u.String(), ":"+placeholder+"@", ":***@", 1)
}
