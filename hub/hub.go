package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/blacktree/blacktree/console"
)

// Hub is one hub instance: gRPC server for workers and operators, HTTP
// server for probes and metrics, and the Dispatcher.
type Hub struct {
	cfg        Config
	log        hclog.Logger
	b          Broker
	manager    *WorkerManager
	dispatcher *Dispatcher
	metrics    *metrics
	grpc       *grpc.Server
	health     *health.Server
	http       *http.Server
	autoscale  *autoscaleCollector
	console    *console.Console // nil without Config.ConsoleAuth

	conns     *connRegistry   // accepted gRPC connections, to end silent sessions
	sessions  *sessionCounter // worker sessions per credential (admission.go)
	streamWG  sync.WaitGroup  // stream goroutines (first recv, senders, session ends)
	bgWG      sync.WaitGroup  // Run's goroutines: servers, dispatch loop
	serving   atomic.Bool
	stopping  atomic.Bool
	listening chan struct{} // closed once Run listens

	dispatchCancel context.CancelFunc
	// keeper keeps the orphan ledger while this hub is its active
	// consumer; nil without a ledger. ledgerCancel ends it and the
	// dispatcher's ledger writer, after the dispatcher has stopped.
	keeper       *ledgerKeeper
	ledgerCancel context.CancelFunc

	// idLocks serialise the registrations of one worker id (striped by
	// idLock): the identity check and the registration it allows are one
	// step, so that two credentials racing for an id cannot both pass.
	idLocks [64]sync.Mutex

	mu       sync.Mutex // guards the following
	grpcAddr net.Addr
	httpAddr net.Addr
	ran      bool

	stopOnce sync.Once
	stopReq  chan struct{} // closed when the stop path starts
	stopped  chan struct{} // closed when the stop path is done
	stopErr  error
}

// New validates cfg and builds a Hub on b. It does no I/O.
func New(cfg Config, b Broker, logger hclog.Logger) (*Hub, error) {
	if b == nil {
		return nil, errors.New("hub: broker is required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	h := &Hub{
		cfg:            cfg,
		log:            logger.Named("hub"),
		b:              b,
		metrics:        newMetrics(),
		sessions:       newSessionCounter(cfg.MaxSessionsPerCredential),
		listening:      make(chan struct{}),
		stopReq:        make(chan struct{}),
		stopped:        make(chan struct{}),
		dispatchCancel: func() {},
		ledgerCancel:   func() {},
	}
	h.conns = newConnRegistry(h.connLimits())
	h.manager = newWorkerManager(cfg, h.log.Named("manager"))
	h.dispatcher = newDispatcher(cfg, b, h.manager, h.metrics, h.log.Named("dispatcher"))
	h.metrics.registerState(h.manager, h.dispatcher)
	h.autoscale = newAutoscaleCollector(h.manager, h.dispatcher, b)
	h.metrics.registry.MustRegister(h.autoscale)
	if cfg.ConsoleAuth != nil {
		if err := h.newConsole(); err != nil {
			return nil, err
		}
	}
	if h.dispatcher.ledger != nil {
		h.keeper = newLedgerKeeper(cfg, h.dispatcher.ledger.l, h.dispatcher, h.log.Named("ledger"))
	}
	h.grpc, h.health = h.newGRPCServer()
	h.http = &http.Server{Handler: h.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	return h, nil
}

// Config returns the effective configuration (defaults applied).
func (h *Hub) Config() Config { return h.cfg }

// GRPCAddr returns the gRPC listen address once Run listens (nil before).
func (h *Hub) GRPCAddr() net.Addr { h.mu.Lock(); defer h.mu.Unlock(); return h.grpcAddr }

// HTTPAddr returns the HTTP listen address once Run listens (nil before).
func (h *Hub) HTTPAddr() net.Addr { h.mu.Lock(); defer h.mu.Unlock(); return h.httpAddr }

// Listening is closed once Run has bound its listeners.
func (h *Hub) Listening() <-chan struct{} { return h.listening }

// CloseUnauthorized ends every open worker session whose credentials
// Config.Authorized no longer accepts (call it after reloading tokens) and
// returns how many it ended. Their jobs are handled as for any lost
// session (grace period, then a lost report).
func (h *Hub) CloseUnauthorized() int {
	if h.cfg.Authorized == nil {
		return 0
	}
	n := 0
	for _, w := range h.manager.live() {
		if !h.cfg.Authorized(w.authCtx) {
			w.log.Warn("worker credentials revoked; closing the session")
			w.kill(ErrRevoked)
			n++
		}
	}
	return n
}

// Ready reports whether the hub serves and the broker is connected.
func (h *Hub) Ready() bool {
	return h.serving.Load() && !h.stopping.Load() && h.b.Ready()
}

// Run listens, serves gRPC and HTTP and dispatches until ctx ends (then it
// drains for at most Config.DrainTimeout) or Shutdown is called. A listen
// error is returned at once.
func (h *Hub) Run(ctx context.Context) error {
	h.mu.Lock()
	if h.ran {
		h.mu.Unlock()
		return errors.New("hub: Run called twice")
	}
	h.ran = true
	h.mu.Unlock()
	select {
	case <-h.stopReq:
		return errors.New("hub: Run called after Shutdown")
	default:
	}
	glis, err := net.Listen("tcp", h.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("hub: listen grpc %s: %w", h.cfg.GRPCAddr, err)
	}
	var hlis net.Listener
	if h.cfg.HTTPAddr != "-" {
		if hlis, err = net.Listen("tcp", h.cfg.HTTPAddr); err != nil {
			_ = glis.Close()
			return fmt.Errorf("hub: listen http %s: %w", h.cfg.HTTPAddr, err)
		}
	}
	h.mu.Lock()
	h.grpcAddr = glis.Addr()
	if hlis != nil {
		h.httpAddr = hlis.Addr()
	}
	h.mu.Unlock()
	close(h.listening)

	serveErr := make(chan error, 2)
	h.bgWG.Go(func() {
		if err := h.grpc.Serve(h.conns.listener(glis)); err != nil {
			serveErr <- fmt.Errorf("hub: grpc serve: %w", err)
		}
	})
	if hlis != nil {
		h.bgWG.Go(func() {
			if err := h.http.Serve(hlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("hub: http serve: %w", err)
			}
		})
	}
	dctx, dcancel := context.WithCancel(context.Background())
	lctx, lcancel := context.WithCancel(context.Background())
	h.mu.Lock()
	h.dispatchCancel = dcancel
	h.ledgerCancel = lcancel
	h.mu.Unlock()
	h.bgWG.Go(func() { h.dispatcher.run(dctx) })
	if h.dispatcher.events != nil {
		// lctx ends after the Dispatcher has stopped: the last finished
		// events are queued by then.
		h.bgWG.Go(func() { h.dispatcher.events.run(lctx) })
	}
	if h.keeper != nil {
		h.bgWG.Go(func() { h.dispatcher.ledger.run(lctx) })
		h.bgWG.Go(func() { h.keeper.run(lctx) })
	}
	h.bgWG.Go(func() { h.conns.sweepEvery(time.Minute, h.stopped) })
	if h.console != nil {
		h.bgWG.Go(func() { h.console.Run(context.Background()) }) // ends at console.Shutdown in stop
	}
	h.serving.Store(true)
	h.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.log.Info("hub serving", "grpc_addr", h.grpcAddr.String(), "http_addr", fmt.Sprint(h.httpAddr), "hub_id", h.cfg.HubID, "deployment_id", h.cfg.DeploymentID,
		"placement", h.cfg.Placement.String())

	var runErr error
	select {
	case <-ctx.Done():
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.DrainTimeout)
		defer cancel()
		h.beginStop(dctx)
	case <-h.stopReq:
	case runErr = <-serveErr:
		h.log.Error("server failed; stopping", "error", runErr)
		sctx, cancel := context.WithTimeout(context.Background(), h.cfg.DrainTimeout)
		defer cancel()
		h.beginStop(sctx)
	}
	<-h.stopped
	h.bgWG.Wait()
	return runErr
}

// Shutdown drains and stops the hub: it stops consuming, requeues held
// deliveries, waits for in-flight jobs until ctx ends, then closes the
// worker sessions and the servers. Idempotent; Run's own stop (when its ctx
// ends) is the same path.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.beginStop(ctx)
	select {
	case <-h.stopped:
		return h.stopErr
	case <-ctx.Done():
		return fmt.Errorf("hub: shutdown: %w", ctx.Err())
	}
}

func (h *Hub) beginStop(ctx context.Context) {
	h.stopOnce.Do(func() {
		close(h.stopReq)
		go func() { // owned: waited for through h.stopped
			h.stopErr = h.stop(ctx)
			close(h.stopped)
		}()
	})
}

// stop is the one stop path.
func (h *Hub) stop(ctx context.Context) error {
	h.stopping.Store(true)
	h.health.Shutdown()
	h.log.Info("draining: no new jobs; waiting for in-flight jobs")
	var errs []error
	if err := h.b.StopConsuming(ctx); err != nil {
		h.log.Warn("stop consuming failed", "error", err)
	}
	if err := h.dispatcher.drain(ctx); err != nil {
		h.log.Warn("drain incomplete", "error", err)
		errs = append(errs, err)
	}

	// Close the sessions (workers reconnect elsewhere and report their jobs)
	// and stop the gRPC server; a worker racing back in is closed too.
	done := make(chan struct{})
	go func() { // owned: waited for below
		h.grpc.GracefulStop()
		close(done)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for stopped := false; !stopped; {
		for _, w := range h.manager.live() {
			w.kill(ErrHubStopping)
		}
		select {
		case <-done:
			stopped = true
		case <-ctx.Done():
			h.grpc.Stop()
			<-done
			stopped = true
		case <-tick.C:
		}
	}

	h.mu.Lock()
	cancel, ledgerCancel := h.dispatchCancel, h.ledgerCancel
	h.mu.Unlock()
	cancel()
	h.dispatcher.stop()
	ledgerCancel() // after the last status is queued as done
	h.manager.close()
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer hcancel()
	if h.console != nil {
		_ = h.console.Shutdown(hctx) // ends its log streams, which the HTTP server would wait for
	}
	if err := h.http.Shutdown(hctx); err != nil {
		_ = h.http.Close()
	}
	h.conns.stop()
	h.streamWG.Wait()
	h.log.Info("hub stopped")
	return errors.Join(errs...)
}
