package rabbit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/broker"
)

// Client is the RabbitMQ adapter: it consumes the execute queue on one AMQP
// connection and publishes to the status queue on another, and rebuilds
// either after a failure. Its methods are safe for concurrent use.
type Client struct {
	cfg Config
	log hclog.Logger
	out chan broker.Delivery // unbuffered; sent on only by the consume loop
	// adopt carries adoption announcements; sent on (never blocking) only
	// by the consume loop, never closed.
	adopt chan broker.Adoption
	cons  consumer
	pub   publisher
	nodes *nodes // the URLs dialled, in turn (nodes.go)
	// ledger carries ledger-queue deliveries; sent on only by the ledger
	// loop (ledger.go), never closed.
	ledger chan broker.LedgerDelivery
	// cancels carries cancel-queue deliveries; sent on only by the cancel
	// loop (cancels.go), never closed. cancelAnn carries cancel
	// announcements; sent on (never blocking) only by the consume loop.
	cancels   chan broker.Delivery
	cancelAnn chan broker.CancelRequest
	// ledgerSession is the number of the live ledger consumer session, 0
	// while there is none; ledgerSeq numbers sessions.
	ledgerSession atomic.Uint64
	ledgerSeq     atomic.Uint64
	// events is the channel job events are published on (events.go).
	events eventChannel
	// brokerMaxBody is the broker's max_message_size once a publish found
	// it (refusedForSize), else 0.
	brokerMaxBody atomic.Int64

	closed    chan struct{} // closed by Shutdown or when Run returns
	closeOnce sync.Once
	outOnce   sync.Once

	mu       sync.Mutex // guards the following
	state    clientState
	initCons *consumeSession // opened by Connect, handed to Run
	initPub  *publishSession // opened by Connect, handed to Run
	runDone  chan struct{}   // closed when Run returns; nil until Run starts
	cancel   context.CancelFunc
}

type clientState int

const (
	stateNew clientState = iota
	stateConnected
	stateRunning
	stateClosed
)

// New validates cfg, applies defaults and returns a Client. It does no I/O.
func New(cfg Config, logger hclog.Logger) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	log := logger.Named("rabbit")
	c := &Client{
		cfg:    cfg,
		log:    log,
		out:    make(chan broker.Delivery),
		adopt:  make(chan broker.Adoption, adoptionBuffer),
		ledger: make(chan broker.LedgerDelivery),

		cancels:   make(chan broker.Delivery),
		cancelAnn: make(chan broker.CancelRequest, cancelBuffer),
		closed:    make(chan struct{}),
	}
	urls, _ := SplitURLs(cfg.URL) // validated by withDefaults
	c.nodes = newNodes(urls)
	c.cons.init(log.Named("consumer"))
	c.pub.init(log.Named("publisher"))
	return c, nil
}

// Config returns the effective configuration (defaults applied).
func (c *Client) Config() Config { return c.cfg }

// Connect dials both connections and declares the queues, so that a broker
// that is unreachable or refuses the topology is reported at start-up as one
// error line (the URL's password masked). Run uses these connections. Calling
// Connect is optional: Run dials by itself, retrying with backoff.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateNew {
		return errors.New("rabbit: Connect called twice or after Run/Shutdown")
	}
	pub, err := c.openPublish(ctx)
	if err != nil {
		return err
	}
	cons, err := c.openConsume(ctx)
	if err != nil {
		pub.close(c.cfg.RPCTimeout)
		return err
	}
	c.initPub, c.initCons = pub, cons
	c.state = stateConnected
	c.log.Info("connected", "url", MaskURL(c.cfg.URL))
	return nil
}

// Run consumes the execute queue, serves Publish and reconnects both
// connections with backoff until ctx ends or Shutdown is called. It returns
// nil on such a clean stop. Deliveries() is closed when Run returns.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.state == stateRunning || c.state == stateClosed {
		c.mu.Unlock()
		return errors.New("rabbit: Run called twice or after Shutdown")
	}
	ctx, cancel := context.WithCancel(ctx)
	c.state = stateRunning
	c.cancel = cancel
	c.runDone = make(chan struct{})
	initCons, initPub := c.initCons, c.initPub
	c.initCons, c.initPub = nil, nil
	c.mu.Unlock()

	defer close(c.runDone)
	defer c.closeOut()
	defer c.markClosed()
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() { c.consumeLoop(ctx, initCons) })
	wg.Go(func() { c.publishLoop(ctx, initPub) })
	if c.cfg.LedgerQueue != "" {
		wg.Go(func() { c.ledgerLoop(ctx) })
	}
	if c.cfg.CancelQueue != "" {
		wg.Go(func() { c.cancelLoop(ctx) })
	}
	select {
	case <-ctx.Done():
	case <-c.closed:
	}
	cancel()
	wg.Wait()
	c.log.Debug("stopped")
	return nil
}

// Deliveries returns the channel of execute-queue deliveries. It is the same
// channel for the Client's lifetime, survives reconnects, and is closed once
// Run has returned (or by Shutdown when Run never ran).
func (c *Client) Deliveries() <-chan broker.Delivery { return c.out }

// Ready reports whether both connections are up and the consumer is active
// (or has been stopped on purpose with StopConsuming).
func (c *Client) Ready() bool {
	return c.pub.up.Load() && c.cons.up.Load()
}

// Shutdown stops Run, closes the connections (the broker requeues unacked
// deliveries) and waits for the Client's goroutines, or for ctx. It is
// idempotent; pending Publish calls return broker.ErrClosed.
func (c *Client) Shutdown(ctx context.Context) error {
	c.markClosed()
	c.mu.Lock()
	prev := c.state
	c.state = stateClosed
	done, cancel := c.runDone, c.cancel
	initCons, initPub := c.initCons, c.initPub
	c.initCons, c.initPub = nil, nil
	c.mu.Unlock()

	if initCons != nil {
		initCons.kill()
	}
	if initPub != nil {
		initPub.close(c.cfg.RPCTimeout)
	}
	if done == nil { // Run never started
		if prev != stateClosed {
			c.closeOut()
		}
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rabbit: shutdown: %w", ctx.Err())
	}
}

func (c *Client) markClosed() { c.closeOnce.Do(func() { close(c.closed) }) }
func (c *Client) closeOut()   { c.outOnce.Do(func() { close(c.out) }) }

// dialURL opens one AMQP connection to rawURL named
// "<ConnectionName>-<role>". Dialing honours ctx; dial plus handshake are
// bounded by RPCTimeout. Errors carry the masked URL.
func (c *Client) dialURL(ctx context.Context, role, rawURL string) (amqpConn, error) {
	var batched *batchConn
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.cfg.ConnectionName + "-" + role)
	conn, err := amqp.DialConfig(rawURL, amqp.Config{
		Properties: props,
		Heartbeat:  c.cfg.Heartbeat,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, c.cfg.RPCTimeout)
			defer cancel()
			var d net.Dialer
			nc, err := d.DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the AMQP handshake; the library clears it afterwards.
			if err := nc.SetDeadline(time.Now().Add(c.cfg.RPCTimeout)); err != nil {
				_ = nc.Close()
				return nil, err
			}
			batched = newBatchConn(nc)
			return batched, nil
		},
	})
	if err != nil {
		if batched != nil {
			_ = batched.Close() // a failed handshake may leave it open
		}
		return amqpConn{}, fmt.Errorf("connect to %s: %w", MaskURL(rawURL), err)
	}
	if hook := testHookAfterDial.Load(); hook != nil {
		(*hook)(role)
	}
	return amqpConn{Connection: conn, batch: batched}, nil
}

// sleepCtx waits d, or returns false early when ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// amqpErr renders a close notification (which may be nil on a clean close).
func amqpErr(e *amqp.Error) error {
	if e == nil {
		return errors.New("closed")
	}
	return e
}
