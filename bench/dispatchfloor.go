package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// The dispatch floor: the least any design that moves each job over a
// grpc-go stream must spend, at a given rate (RunDispatchFloor's pace). A bare grpc-go server process (the hub's
// transport settings, no broker, no auth, no bookkeeping) hands out a
// backlog of jobs as RunJob frames, Slots at a time per stream, and answers
// each JobResult with a ResultAck; each client process (one stream, like a
// worker) answers every RunJob with JobAccepted and a JobResult at once.
// Those four frames per job are what the delivery contract requires. Both
// handlers send from their receive loop, so each stream has one goroutine
// of ours: the cheapest shape grpc-go allows.

const dispatchFloorEnv = "BTBENCH_DISPATCH_FLOOR"

// DispatchFloorMain runs a dispatch-floor server or client and exits when
// this process was started as one; otherwise it returns at once. Call it
// first in main.
func DispatchFloorMain() {
	role, arg, ok := strings.Cut(os.Getenv(dispatchFloorEnv), ":")
	if !ok {
		return
	}
	var err error
	switch role {
	case "server":
		err = runFloorServer(arg)
	case "client":
		err = runFloorClient(arg)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "dispatch floor %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// floorServer is the server's state, shared by its stream handlers.
type floorServer struct {
	blacktreev1.UnimplementedWorkerServiceServer
	slots      int
	registered chan struct{} // one send per registered stream
	start      chan struct{} // closed by "go"
	jobs, skip int64         // set before start is closed
	rate       float64       // jobs/s the backlog is handed out at (0: as fast as answered); set before start
	burst      int64         // paced jobs go out this many at a time (0 or 1: one by one); set before start
	t0         time.Time     // when start was closed
	issued     atomic.Int64  // RunJobs handed out
	answered   atomic.Int64  // JobResults received
	skipAt     atomic.Int64  // UnixNano when the skip-th result arrived
	finished   chan time.Duration
}

// runFloorServer serves until stdin closes. Its lines on stdout:
// "listening <addr>", "registered" per stream, then "done <ns>" (the time
// from the skip-th result to the last) after "go <jobs> <skip> <rate>
// <burst>" on stdin (rate in jobs/s, 0 hands jobs out as fast as they are
// answered; a paced burst of jobs goes out at once).
func runFloorServer(slotsArg string) error {
	slots, err := strconv.Atoi(slotsArg)
	if err != nil || slots < 1 {
		return fmt.Errorf("slots %q: want a positive number", slotsArg)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fs := &floorServer{slots: slots, registered: make(chan struct{}, 1024), start: make(chan struct{}), finished: make(chan time.Duration, 1)}
	s := grpc.NewServer(floorServerOptions()...)
	blacktreev1.RegisterWorkerServiceServer(s, fs)
	go func() { _ = s.Serve(lis) }()
	fmt.Printf("listening %s\n", lis.Addr())
	in := bufio.NewReader(os.Stdin)
	go func() {
		for range fs.registered {
			fmt.Println("registered")
		}
	}()
	line, err := in.ReadString('\n')
	if err != nil {
		return nil // the parent gave up before starting
	}
	if _, err := fmt.Sscanf(line, "go %d %d %g %d", &fs.jobs, &fs.skip, &fs.rate, &fs.burst); err != nil || fs.jobs < 1 || fs.skip >= fs.jobs || fs.rate < 0 {
		return fmt.Errorf("stdin said %q, want go <jobs> <skip> <rate> <burst>", line)
	}
	fs.t0 = time.Now()
	close(fs.start)
	fmt.Printf("done %d\n", <-fs.finished)
	_, _ = io.Copy(io.Discard, in) // until the parent closes stdin
	s.Stop()
	return nil
}

// Connect is one client's stream.
func (fs *floorServer) Connect(stream blacktreev1.WorkerService_ConnectServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
		SessionId: "floor", HeartbeatInterval: durationpb.New(time.Minute), HubId: "floor",
	}}}); err != nil {
		return err
	}
	fs.registered <- struct{}{}
	select {
	case <-fs.start:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	for range fs.slots {
		if err := fs.issue(stream); err != nil {
			return err
		}
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		r, ok := m.GetFrame().(*blacktreev1.WorkerMessage_JobResult)
		if !ok {
			continue // JobAccepted: the hub would ack the delivery here
		}
		if err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_ResultAck{ResultAck: &blacktreev1.ResultAck{
			JobId: r.JobResult.GetResponse().GetJobId(),
		}}}); err != nil {
			return err
		}
		switch n := fs.answered.Add(1); {
		case n == fs.skip:
			fs.skipAt.Store(time.Now().UnixNano())
		case n == fs.jobs:
			fs.finished <- time.Duration(time.Now().UnixNano() - fs.skipAt.Load())
		}
		if err := fs.issue(stream); err != nil {
			return err
		}
	}
}

// issue sends the next job of the backlog on stream, if any is left; with
// a rate, not before the job's turn (job n at t0 + (n-1)/rate).
func (fs *floorServer) issue(stream blacktreev1.WorkerService_ConnectServer) error {
	n := fs.issued.Add(1)
	if n > fs.jobs {
		return nil
	}
	if fs.rate > 0 {
		k := n - 1
		if fs.burst > 1 {
			k -= k % fs.burst // the burst's jobs all go out at its first job's turn
		}
		due := fs.t0.Add(time.Duration(float64(k) / fs.rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
	}
	return stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_RunJob{RunJob: &blacktreev1.RunJob{
		Job: Job("floor-" + strconv.FormatInt(n, 10)),
	}}})
}

// floorBurstEnv, set in btbench's environment, makes RunDispatchFloor hand
// paced jobs out this many at a time: what the frames cost at the same rate
// when they travel in groups (docs/BENCHMARKS.md G20).
const floorBurstEnv = "BTBENCH_FLOOR_BURST"

// Environment of a floor client: the worker token it presents (a real hub
// asks for one) and the slots it registers with.
const (
	floorTokenEnv = "BTBENCH_FLOOR_TOKEN"
	floorSlotsEnv = "BTBENCH_FLOOR_SLOTS"
)

// runFloorClient is one worker-shaped client process: a Fleet of one with
// the worker agent's transport settings. It answers every RunJob with
// JobAccepted and a successful JobResult, and heartbeats at the interval
// Registered names, until the server ends the stream. It serves the floor's
// server, and a real hub too (RunDispatch's "hub with bare-grpc workers").
func runFloorClient(addr string) error {
	slots, _ := strconv.Atoi(os.Getenv(floorSlotsEnv))
	f := StartFleet(FleetConfig{Addr: addr, Token: os.Getenv(floorTokenEnv), N: 1, Prefix: fmt.Sprintf("floor-client-%d", os.Getpid()),
		Slots: slots, AgentTransport: true})
	defer f.Close()
	if err := f.WaitRegistered(context.Background()); err != nil {
		return err
	}
	f.Wait() // the server stopped: the measurement is over
	return nil
}

// DispatchFloor is what the dispatch floor measured.
type DispatchFloor struct {
	Jobs, Clients, Slots int
	// Rate is the pace jobs were handed out at (jobs/s; 0: as fast as
	// answered, the floor's own saturation), Burst how many at a time
	// (floorBurstEnv; 0 or 1: one by one).
	Rate        float64
	Burst       int
	Throughput  float64 // jobs/s after the warm-up (DispatchConfig.Skip)
	MachineBusy float64
	// CPUPerJob is µs of CPU per job over the whole drain: "server",
	// "clients" (all of them) and "total" (the machine's busy time).
	CPUPerJob map[string]float64
	// SyscallsPerJob is read and write system calls per job, same roles.
	SyscallsPerJob map[string]float64
}

// framesCPU is the CPU per job of the server and the clients together, µs:
// what the four frames cost at this floor's pace.
func (f *DispatchFloor) framesCPU() float64 { return f.CPUPerJob["server"] + f.CPUPerJob["clients"] }

// RunDispatchFloor drains cfg.Jobs through a floor server and cfg.Workers
// floor clients, with cfg.Slots jobs outstanding per client, handing the
// jobs out at rate jobs/s (0: as fast as they are answered). CPU per job
// depends on the rate (at a lower one fewer frames share a system call and
// a wake-up), so a comparison with another side is fair at its rate.
func RunDispatchFloor(ctx context.Context, cfg DispatchConfig, rate float64, logf func(string, ...any)) (*DispatchFloor, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	start := func(role string, stdout bool) (*exec.Cmd, io.WriteCloser, *bufio.Reader, error) {
		c := exec.CommandContext(ctx, self)
		c.Env = append(os.Environ(), dispatchFloorEnv+"="+role)
		c.Stderr = os.Stderr
		var in io.WriteCloser
		var out *bufio.Reader
		if stdout {
			w, err := c.StdinPipe()
			if err != nil {
				return nil, nil, nil, err
			}
			r, err := c.StdoutPipe()
			if err != nil {
				return nil, nil, nil, err
			}
			in, out = w, bufio.NewReader(r)
		}
		if err := c.Start(); err != nil {
			return nil, nil, nil, fmt.Errorf("start floor %s: %w", role, err)
		}
		cmds = append(cmds, c)
		return c, in, out, nil
	}
	srv, srvIn, srvOut, err := start(fmt.Sprintf("server:%d", cfg.Slots), true)
	if err != nil {
		return nil, err
	}
	defer srvIn.Close()
	// One goroutine reads the server's lines, so that every wait below
	// also ends with ctx (a client that never registers, a stuck drain).
	lines := make(chan string)
	go func() { // ends at EOF: the deferred Kill and Wait close stdout
		defer close(lines)
		for {
			l, err := srvOut.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case lines <- strings.TrimSpace(l):
			case <-ctx.Done():
				return
			}
		}
	}()
	next := func(want string) (string, error) {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", fmt.Errorf("floor server exited; want %s", want)
			}
			return l, nil
		case <-ctx.Done():
			return "", fmt.Errorf("floor server: want %s: %w", want, ctx.Err())
		}
	}
	line, err := next("its address")
	if err != nil {
		return nil, err
	}
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		return nil, fmt.Errorf("floor server said %q, want its address", line)
	}
	pids := []int{srv.Process.Pid}
	for range cfg.Workers {
		c, _, _, err := start("client:"+addr, false)
		if err != nil {
			return nil, err
		}
		pids = append(pids, c.Process.Pid)
	}
	for range cfg.Workers {
		line, err := next("registered")
		if err != nil {
			return nil, err
		}
		if line != "registered" {
			return nil, fmt.Errorf("floor server said %q, want registered", line)
		}
	}
	skip := max(1, int(float64(cfg.Jobs)*cfg.Skip)) // the clock starts at the skip-th result
	meter := StartCPUMeter(pids...)
	burst, _ := strconv.Atoi(os.Getenv(floorBurstEnv))
	if _, err := fmt.Fprintf(srvIn, "go %d %d %g %d\n", cfg.Jobs, skip, rate, burst); err != nil {
		return nil, fmt.Errorf("start the floor drain: %w", err)
	}
	done, err := next("done <ns>")
	if err != nil {
		return nil, err
	}
	u := meter.Stop()
	var ns int64
	if _, err := fmt.Sscanf(done, "done %d", &ns); err != nil || ns <= 0 {
		return nil, fmt.Errorf("floor server said %q, want done <ns>", done)
	}
	f := &DispatchFloor{Jobs: cfg.Jobs, Clients: cfg.Workers, Slots: cfg.Slots, Rate: rate, Burst: burst, MachineBusy: u.MachineBusy,
		Throughput: float64(cfg.Jobs-skip) / time.Duration(ns).Seconds(),
		CPUPerJob:  map[string]float64{}, SyscallsPerJob: map[string]float64{}}
	perJob := func(frac float64) float64 {
		return frac * float64(u.Wall) / float64(time.Microsecond) / float64(cfg.Jobs)
	}
	for i, pid := range pids {
		role := "clients"
		if i == 0 {
			role = "server"
		}
		f.CPUPerJob[role] += perJob(u.Procs[pid])
		f.SyscallsPerJob[role] += float64(u.Syscalls[pid]) / float64(cfg.Jobs)
	}
	f.CPUPerJob["total"] = perJob(u.MachineBusy * float64(runtime.NumCPU()))
	logf("dispatch floor (paced at %.0f jobs/s, 0 = unpaced): %.0f jobs/s; CPU per job: server %.0f µs, clients %.0f µs; reads and writes per job: server %.2f, clients %.2f; machine busy %.0f%%",
		rate, f.Throughput, f.CPUPerJob["server"], f.CPUPerJob["clients"], f.SyscallsPerJob["server"], f.SyscallsPerJob["clients"], 100*f.MachineBusy)
	return f, nil
}
