package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// GRPCRelay is the relay (relay.go) with the contract's gRPC hop in the
// middle: the contract's steps, one job at a time, and nothing else. It
// consumes with the relay's window
// and hands each job to a worker-shaped client as RunJob. It acks the
// delivery on JobAccepted. On JobResult it publishes the response with a
// confirm and sends ResultAck after the confirm (DESIGN §5). That is the
// whole of it: no job table beyond the unacked deliveries, no timers, no
// logging, and the hub's grpc-go transport settings without its
// interceptors. Clients are the dispatch floor's (dispatchfloor.go). It
// runs inside btbench, as the relay does.
//
// A client that leaves mid-drain strands the jobs it was given until
// Stop, which returns them to the queue: a measuring tool, not a hub.
type GRPCRelay struct {
	blacktreev1.UnimplementedWorkerServiceServer
	// Addr is the gRPC address the clients dial.
	Addr string

	q                Queues
	consume, publish *amqp.Connection
	pch              *amqp.Channel
	srv              *grpc.Server
	cancel           context.CancelFunc
	wg               sync.WaitGroup // the serve, dispatch and confirm goroutines
	// free holds one entry per free slot of a connected client; the
	// dispatch goroutine takes one per job, the client's JobResult puts
	// it back.
	free chan *relayStream
	// confirms carries published statuses, in publish order, to the
	// goroutine that waits for their confirms and sends ResultAck.
	confirms chan relayConfirm
	pending  sync.Map   // job id → amqp.Delivery, from RunJob to JobAccepted
	ackMu    sync.Mutex // serialises acks on the consume channel
	pubMu    sync.Mutex // serialises publishes on pch (confirm sequence numbers)

	stopOnce sync.Once
	stopErr  error // the first failure before Stop; set by Stop

	mu  sync.Mutex // guards err
	err error      // the first failure
}

// maxRelaySlots bounds the slots the GRPCRelay hands out, all clients
// together (free's capacity).
const maxRelaySlots = 4096

// relayStream is one client's stream. Its Send is shared by the dispatch
// goroutine (RunJob) and the confirm goroutine (ResultAck), so mu
// serialises it.
type relayStream struct {
	mu     sync.Mutex
	stream blacktreev1.WorkerService_ConnectServer
}

func (rs *relayStream) send(m *blacktreev1.HubMessage) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.stream.Send(m)
}

type relayConfirm struct {
	dc *amqp.DeferredConfirmation
	rs *relayStream
	id string
}

// StartGRPCRelay starts relaying from q.Execute to q.Status through the
// clients that connect to Addr.
func StartGRPCRelay(url string, q Queues, prefetch int) (*GRPCRelay, error) {
	r := &GRPCRelay{q: q, free: make(chan *relayStream, maxRelaySlots), confirms: make(chan relayConfirm, maxRelaySlots)}
	fail := func(err error) (*GRPCRelay, error) {
		for _, c := range []*amqp.Connection{r.consume, r.publish} {
			if c != nil {
				_ = c.Close()
			}
		}
		return nil, fmt.Errorf("grpc relay: %w", err)
	}
	var err error
	if r.consume, err = amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "btbench-grpc-relay-consume"}}); err != nil {
		return fail(err)
	}
	if r.publish, err = amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "btbench-grpc-relay-publish"}}); err != nil {
		return fail(err)
	}
	cch, err := r.consume.Channel()
	if err != nil {
		return fail(err)
	}
	if err := cch.Qos(prefetch, 0, false); err != nil {
		return fail(err)
	}
	if r.pch, err = r.publish.Channel(); err != nil {
		return fail(err)
	}
	if err := r.pch.Confirm(false); err != nil {
		return fail(err)
	}
	deliveries, err := cch.Consume(q.Execute, "btbench-grpc-relay", false, false, false, false, nil)
	if err != nil {
		return fail(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	r.Addr = lis.Addr().String()
	// Stop waits for the handlers, so that none sends on confirms after
	// it is closed.
	r.srv = grpc.NewServer(append(floorServerOptions(), grpc.WaitForHandlers(true))...)
	blacktreev1.RegisterWorkerServiceServer(r.srv, r)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(3)
	go func() { defer r.wg.Done(); _ = r.srv.Serve(lis) }()
	go func() { defer r.wg.Done(); r.dispatch(ctx, deliveries) }()
	go func() { defer r.wg.Done(); r.confirm() }()
	return r, nil
}

// dispatch hands each delivery to a free slot as RunJob.
func (r *GRPCRelay) dispatch(ctx context.Context, deliveries <-chan amqp.Delivery) {
	for {
		d, req, ok := nextRequest(ctx, deliveries)
		if !ok {
			return
		}
		var rs *relayStream
		select {
		case rs = <-r.free:
		case <-ctx.Done():
			return
		}
		r.pending.Store(req.GetJobId(), d)
		if err := rs.send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_RunJob{RunJob: &blacktreev1.RunJob{Job: req}}}); err != nil {
			r.fail(fmt.Errorf("send RunJob: %w", err))
		}
	}
}

// confirm waits for each published status's confirm, in publish order,
// and sends its ResultAck.
func (r *GRPCRelay) confirm() {
	for x := range r.confirms {
		if !x.dc.Wait() {
			r.fail(fmt.Errorf("status of %s not confirmed", x.id))
			continue
		}
		if err := x.rs.send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_ResultAck{ResultAck: &blacktreev1.ResultAck{JobId: x.id}}}); err != nil {
			r.fail(fmt.Errorf("send ResultAck: %w", err))
		}
	}
}

// Connect is one client's stream: Register, then JobAccepted and JobResult
// frames (heartbeats are ignored).
func (r *GRPCRelay) Connect(stream blacktreev1.WorkerService_ConnectServer) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
		SessionId: "grpc-relay", HeartbeatInterval: durationpb.New(time.Minute), HubId: "grpc-relay",
	}}}); err != nil {
		return err
	}
	rs := &relayStream{stream: stream}
	for range m.GetRegister().GetSlots() {
		select {
		case r.free <- rs:
		default:
			err := fmt.Errorf("grpc relay: a client registered more than the %d slots it hands out", maxRelaySlots)
			r.fail(err)
			return err
		}
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch f := m.GetFrame().(type) {
		case *blacktreev1.WorkerMessage_JobAccepted:
			if d, ok := r.pending.LoadAndDelete(f.JobAccepted.GetJobId()); ok {
				r.ackMu.Lock()
				err := d.(amqp.Delivery).Ack(false)
				r.ackMu.Unlock()
				if err != nil {
					r.fail(fmt.Errorf("ack: %w", err))
				}
			}
		case *blacktreev1.WorkerMessage_JobResult:
			select {
			case r.free <- rs: // this slot's entry was taken for the job
			default:
				err := errors.New("grpc relay: a JobResult for more jobs than the client was given")
				r.fail(err)
				return err
			}
			if err := r.publishResult(rs, f.JobResult.GetResponse()); err != nil {
				r.fail(err)
				return err
			}
		}
	}
}

// publishResult publishes a job's response and queues it for its confirm.
func (r *GRPCRelay) publishResult(rs *relayStream, resp *blacktreev1.JobResponse) error {
	body, err := jobspec.EncodeResponse(resp)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	r.pubMu.Lock()
	dc, err := r.pch.PublishWithDeferredConfirmWithContext(context.Background(), "", r.q.Status, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: resp.GetJobId(), Body: body,
	})
	r.pubMu.Unlock()
	if err != nil {
		return fmt.Errorf("publish status: %w", err)
	}
	r.confirms <- relayConfirm{dc: dc, rs: rs, id: resp.GetJobId()}
	return nil
}

func (r *GRPCRelay) fail(err error) {
	r.mu.Lock()
	r.err = firstErr(r.err, err)
	r.mu.Unlock()
}

// Stop stops the relay, ends the clients' streams and closes its
// connections (unacked deliveries return to the queue). It returns the
// first failure of the run; failures while stopping are not counted.
// Idempotent.
func (r *GRPCRelay) Stop() error {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopErr = r.err
		r.mu.Unlock()
		r.cancel()
		r.srv.Stop() // waits for the handlers: nothing sends on confirms after this
		close(r.confirms)
		_ = r.consume.Close()
		_ = r.publish.Close() // ends any wait for a confirm
		r.wg.Wait()
	})
	return r.stopErr
}

// GRPCRelayPair is one alternating pair: the relay's drain, then the gRPC
// relay's on the same backlog size.
type GRPCRelayPair struct {
	Relay, GRPCRelay SideResult
}

// Ratio is the gRPC relay's jobs/s over the relay's.
func (p GRPCRelayPair) Ratio() float64 {
	if p.Relay.Throughput <= 0 {
		return 0
	}
	return p.GRPCRelay.Throughput / p.Relay.Throughput
}

// RunGRPCRelay drains cfg.Jobs through the relay and then through the
// gRPC relay with cfg.Workers floor clients of cfg.Slots slots each,
// pairs times, each drain on fresh queues.
func RunGRPCRelay(ctx context.Context, env *Env, cfg DispatchConfig, pairs int, logf func(string, ...any)) ([]GRPCRelayPair, error) {
	var out []GRPCRelayPair
	for i := range pairs {
		base, err := startBaseline(ctx, env.AMQPURL, cfg, logf)
		if err != nil {
			return out, err
		}
		base.stop()
		res, err := drainGRPCRelay(ctx, env, cfg, fmt.Sprintf("grelay%d", i), logf)
		if err != nil {
			return out, err
		}
		p := GRPCRelayPair{Relay: base.res, GRPCRelay: res}
		logf("grpc relay: %.0f jobs/s against the relay's %.0f: %.2f×", res.Throughput, base.res.Throughput, p.Ratio())
		out = append(out, p)
	}
	return out, nil
}

func drainGRPCRelay(ctx context.Context, env *Env, cfg DispatchConfig, prefix string, logf func(string, ...any)) (SideResult, error) {
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return SideResult{}, err
	}
	defer func() { _ = q.Delete(env.AMQPURL) }()
	var relay *GRPCRelay
	var clients []*cluster.Process
	stop := func() error {
		for _, c := range clients {
			_ = c.Stop(10 * time.Second)
		}
		clients = nil
		if relay == nil {
			return nil
		}
		return relay.Stop()
	}
	logf("grpc relay: draining %d jobs through the relay's AMQP work and %d bare-grpc clients x %d slots", cfg.Jobs, cfg.Workers, cfg.Slots)
	res, _, err := drain(ctx, env.AMQPURL, q, cfg, prefix, func() error {
		var err error
		if relay, err = StartGRPCRelay(env.AMQPURL, q, cfg.Prefetch); err != nil {
			return err
		}
		for range cfg.Workers {
			c, err := env.startFloorClient(relay.Addr, cfg.Slots)
			if err != nil {
				return err
			}
			clients = append(clients, c)
		}
		return nil
	}, func() map[string][]int {
		m := map[string][]int{}
		for _, c := range clients {
			m["workers"] = append(m["workers"], c.Pid())
		}
		return m
	}, nil)
	if serr := stop(); err == nil { // stop also after a failed start
		err = serr
	} else if serr != nil {
		// A relay failure is why a drain does not finish: say which.
		err = fmt.Errorf("%w (%v)", err, serr)
	}
	if err != nil {
		return res, err
	}
	res.Name = "grpc relay"
	return res, nil
}
