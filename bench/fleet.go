package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/hbsched"
	"github.com/blacktree/blacktree/workeragent"
)

// FleetConfig configures a fleet of in-process worker clients.
type FleetConfig struct {
	// Addr is the hub's gRPC address.
	Addr string
	// Token is the worker bearer token (empty: no authorization header).
	Token string
	// N is the number of workers; each has its own gRPC connection (its
	// own TCP connection) and stream.
	N int
	// Parallel bounds how many workers are connecting (dial + Register +
	// Registered) at once. Default 200.
	Parallel int
	// Prefix names the workers: <Prefix>-00000 ...
	Prefix string
	// KeepaliveTime and KeepaliveTimeout are the client keepalive
	// parameters (0: the worker agent's defaults).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// Slots each worker registers with. Default 1.
	Slots int
}

// Fleet is N lightweight workers speaking the worker protocol
// (worker.proto): Register, Heartbeat every Registered.heartbeat_interval,
// and for every RunJob an immediate JobAccepted followed by a successful
// JobResult (a noop executor with zero delay). They do not reconnect: a broken stream is counted in Stats.Disconnected.
type Fleet struct {
	cfg    FleetConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}

	registered, disconnected, failed atomic.Int64
	jobs, acks, heartbeats           atomic.Int64
	lastRegisteredNs                 atomic.Int64
	intervalNs, intervalUpdates      atomic.Int64 // the last heartbeat interval a worker was given; HeartbeatInterval frames
	gridNs                           atomic.Int64 // the last Registered.heartbeat_grid

	mu       sync.Mutex // guards the following
	conns    []*grpc.ClientConn
	firstErr error
	regDone  chan struct{} // closed when all N registered or failed
}

// FleetStats are a fleet's counters.
type FleetStats struct {
	Registered, Failed, Disconnected, Jobs, Acks, Heartbeats int64
	// LastRegistered is when the last worker got Registered.
	LastRegistered time.Time
	// Interval is the heartbeat interval a worker was given last
	// (Registered or HeartbeatInterval); IntervalUpdates counts the
	// HeartbeatInterval frames.
	Interval        time.Duration
	IntervalUpdates int64
	// Grid is the heartbeat grid a worker was given last (Registered).
	Grid time.Duration
}

// StartFleet starts connecting cfg.N workers and returns at once; use
// WaitRegistered to wait for them.
func StartFleet(cfg FleetConfig) *Fleet {
	if cfg.Parallel <= 0 {
		cfg.Parallel = 200
	}
	if cfg.KeepaliveTime == 0 {
		cfg.KeepaliveTime = workeragent.DefaultKeepaliveTime
	}
	if cfg.KeepaliveTimeout == 0 {
		cfg.KeepaliveTimeout = workeragent.DefaultKeepaliveTimeout
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{cfg: cfg, ctx: ctx, cancel: cancel, sem: make(chan struct{}, cfg.Parallel), regDone: make(chan struct{})}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for i := range cfg.N {
			select {
			case f.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			f.wg.Add(1)
			go f.run(fmt.Sprintf("%s-%05d", cfg.Prefix, i))
		}
	}()
	return f
}

func (f *Fleet) fail(err error) {
	f.mu.Lock()
	if f.firstErr == nil {
		f.firstErr = err
	}
	f.mu.Unlock()
	f.countDone(&f.failed)
}

func (f *Fleet) countDone(c *atomic.Int64) {
	c.Add(1)
	if f.registered.Load()+f.failed.Load() == int64(f.cfg.N) {
		f.mu.Lock()
		select {
		case <-f.regDone:
		default:
			close(f.regDone)
		}
		f.mu.Unlock()
	}
}

// run is one worker: it owns its stream's Recv side; sends are serialised
// by sendMu (the heartbeat timer sends too).
func (f *Fleet) run(id string) {
	defer f.wg.Done()
	released := false
	release := func() {
		if !released {
			released = true
			<-f.sem
		}
	}
	defer release()
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: f.cfg.KeepaliveTime, Timeout: f.cfg.KeepaliveTimeout}),
		// Small client buffers: this process holds thousands of
		// connections; the hub's side is what is measured.
		grpc.WithReadBufferSize(4 << 10),
		grpc.WithWriteBufferSize(4 << 10),
		grpc.WithSharedWriteBuffer(true),
	}
	conn, err := grpc.NewClient(f.cfg.Addr, opts...)
	if err != nil {
		f.fail(err)
		return
	}
	f.mu.Lock()
	f.conns = append(f.conns, conn)
	f.mu.Unlock()
	ctx := f.ctx
	if f.cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+f.cfg.Token)
	}
	stream, err := blacktreev1.NewWorkerServiceClient(conn).Connect(ctx)
	if err != nil {
		f.fail(fmt.Errorf("%s: connect: %w", id, err))
		return
	}
	if err := stream.Send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: &blacktreev1.Register{
		WorkerId: id, Name: id, Version: "btbench", Slots: uint32(f.cfg.Slots), HeartbeatIntervalUpdates: true,
	}}}); err != nil {
		f.fail(fmt.Errorf("%s: register: %w", id, err))
		return
	}
	first, err := stream.Recv()
	if err != nil || first.GetRegistered() == nil {
		f.fail(fmt.Errorf("%s: want Registered, got %v (%v)", id, first, err))
		return
	}
	f.lastRegisteredNs.Store(time.Now().UnixNano())
	f.countDone(&f.registered)
	release()

	var sendMu sync.Mutex // serialises stream.Send
	send := func(m *blacktreev1.WorkerMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	reg := first.GetRegistered()
	interval := reg.GetHeartbeatInterval().AsDuration()
	if interval <= 0 {
		interval = workeragent.DefaultHeartbeatInterval
	}
	f.intervalNs.Store(int64(interval))
	// Like the worker agent: a random phase on the hub's grid (so ten
	// thousand workers do not beat in lockstep), on the wall clock.
	grid := reg.GetHeartbeatGrid().AsDuration()
	f.gridNs.Store(int64(grid))
	sched := hbsched.New(interval, grid)
	var beat func()
	var timer *time.Timer
	var timerMu sync.Mutex // guards timer, sched (once the timer runs) and stopped
	stopped := false
	beat = func() {
		if err := send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{
			SentAt: timestamppb.Now(),
		}}}); err != nil {
			return
		}
		f.heartbeats.Add(1)
		timerMu.Lock()
		if !stopped {
			timer.Reset(sched.Next(time.Now()))
		}
		timerMu.Unlock()
	}
	timerMu.Lock()
	timer = time.AfterFunc(sched.Until(time.Now()), beat)
	timerMu.Unlock()
	defer func() {
		timerMu.Lock()
		stopped = true
		timer.Stop()
		timerMu.Unlock()
	}()

	for {
		m, err := stream.Recv()
		if err != nil {
			if f.ctx.Err() == nil {
				f.disconnected.Add(1) // the hub ended the stream (io.EOF) or it broke
			}
			return
		}
		switch fr := m.GetFrame().(type) {
		case *blacktreev1.HubMessage_RunJob:
			jobID := fr.RunJob.GetJob().GetJobId()
			now := timestamppb.Now()
			if send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobAccepted{JobAccepted: &blacktreev1.JobAccepted{JobId: jobID}}}) != nil {
				continue
			}
			f.jobs.Add(1)
			_ = send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{
				Response: &blacktreev1.JobResponse{JobId: jobID, Success: true, ImageUrl: fr.RunJob.GetJob().GetImageName(),
					Logs: "noop: job " + jobID + " done\n", WorkerId: id, StartedAt: now, FinishedAt: timestamppb.Now()},
			}}})
		case *blacktreev1.HubMessage_ResultAck:
			f.acks.Add(1)
		case *blacktreev1.HubMessage_HeartbeatInterval:
			// Like the worker agent: the new period, at a new phase.
			d := fr.HeartbeatInterval.GetInterval().AsDuration()
			if d <= 0 {
				continue
			}
			f.intervalUpdates.Add(1)
			f.intervalNs.Store(int64(d))
			timerMu.Lock()
			sched = hbsched.New(d, grid)
			if !stopped {
				timer.Reset(sched.Until(time.Now()))
			}
			timerMu.Unlock()
		}
	}
}

// WaitRegistered waits until every worker has registered or failed to.
// It returns the first failure, if any.
func (f *Fleet) WaitRegistered(ctx context.Context) error {
	select {
	case <-f.regDone:
	case <-ctx.Done():
		return fmt.Errorf("%d of %d workers registered: %w", f.registered.Load(), f.cfg.N, ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.firstErr != nil {
		return fmt.Errorf("%d of %d workers failed to register; first: %w", f.failed.Load(), f.cfg.N, f.firstErr)
	}
	return nil
}

// Wait blocks until every worker's stream has ended: the hub ended it, or
// Close did.
func (f *Fleet) Wait() { f.wg.Wait() }

// Stats returns the counters.
func (f *Fleet) Stats() FleetStats {
	return FleetStats{Registered: f.registered.Load(), Failed: f.failed.Load(), Disconnected: f.disconnected.Load(),
		Jobs: f.jobs.Load(), Acks: f.acks.Load(), Heartbeats: f.heartbeats.Load(),
		LastRegistered: time.Unix(0, f.lastRegisteredNs.Load()),
		Interval:       time.Duration(f.intervalNs.Load()), IntervalUpdates: f.intervalUpdates.Load(), Grid: time.Duration(f.gridNs.Load())}
}

// Close ends every stream and connection and waits for the workers.
func (f *Fleet) Close() {
	f.cancel()
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	f.wg.Wait()
	// Conns appended after the first sweep (a worker that was dialing).
	f.mu.Lock()
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
}
