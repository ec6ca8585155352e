package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/hub"
)

// The floor is the memory baseline of the fleet measurement: a bare
// grpc-go server with the hub's transport settings (buffers, fixed
// windows, no HPACK table) whose Connect handler answers Registered and
// then only receives, on the handler goroutine — the least any grpc-go
// server can hold per worker stream. It runs as its own process (btbench
// re-executed with floorEnv set) so that its RSS is its own.

const (
	floorEnv         = "BTBENCH_GRPC_FLOOR_SERVER"
	floorIntervalEnv = "BTBENCH_GRPC_FLOOR_HEARTBEAT_INTERVAL" // what Registered gives the fleet
	floorGridEnv     = "BTBENCH_GRPC_FLOOR_HEARTBEAT_GRID"     // and Registered.heartbeat_grid
)

// FloorServerMain runs the floor server and exits when this process was
// started as one; otherwise it returns at once. Call it first in main.
func FloorServerMain() {
	if os.Getenv(floorEnv) == "" {
		return
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor server:", err)
		os.Exit(1)
	}
	interval, err := time.ParseDuration(os.Getenv(floorIntervalEnv))
	if err != nil || interval <= 0 {
		fmt.Fprintf(os.Stderr, "floor server: %s=%q: want a heartbeat interval\n", floorIntervalEnv, os.Getenv(floorIntervalEnv))
		os.Exit(1)
	}
	grid, err := time.ParseDuration(os.Getenv(floorGridEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "floor server: %s=%q: want a heartbeat grid\n", floorGridEnv, os.Getenv(floorGridEnv))
		os.Exit(1)
	}
	s := grpc.NewServer(floorServerOptions()...)
	blacktreev1.RegisterWorkerServiceServer(s, floorService{interval: interval, grid: grid})
	fmt.Printf("listening %s\n", lis.Addr())
	go func() {
		// The parent follows the garbage collections (steadyWindow).
		s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/allocs:bytes"}}
		for range time.Tick(500 * time.Millisecond) {
			metrics.Read(s)
			fmt.Printf("gc %d %d\n", s[0].Value.Uint64(), s[1].Value.Uint64())
		}
	}()
	go func() {
		// Exit with the parent: it closes our stdin.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}()
	_ = s.Serve(lis)
	os.Exit(0)
}

// floorServerOptions are the hub's transport settings (hub/grpcserver.go)
// without its interceptors.
func floorServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ReadBufferSize(8 << 10), grpc.WriteBufferSize(8 << 10), grpc.SharedWriteBuffer(true),
		grpc.InitialWindowSize(1 << 20), grpc.InitialConnWindowSize(1 << 20), grpc.HeaderTableSize(0),
		// The hub's keepalive defaults: without the enforcement policy
		// grpc-go answers the fleet's 30s client pings with GOAWAY
		// too_many_pings once the idle window runs past them.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: hub.DefaultKeepaliveTime, Timeout: hub.DefaultKeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: hub.DefaultKeepaliveMinTime, PermitWithoutStream: true}),
	}
}

type floorService struct {
	blacktreev1.UnimplementedWorkerServiceServer
	interval time.Duration // the heartbeat interval the hub would give the fleet
	grid     time.Duration // and the grid of their phases (0: none)
}

func (f floorService) Connect(stream blacktreev1.WorkerService_ConnectServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
		SessionId: "floor", HeartbeatInterval: durationpb.New(f.interval), HubId: "floor",
		HeartbeatGrid: durationpb.New(f.grid),
	}}}); err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}

// FloorResult is the floor server's memory with a fleet connected.
type FloorResult struct {
	N                   int
	RSSBefore, RSSAfter int64
	RSSPerStream        float64 // bytes, after the settle
	// Idle is the same idle window as the hub's (FleetRunConfig.SteadyGCs).
	Idle IdleWindowResult
}

// PeakPerStream is the idle window's peak RSS, less the RSS before the
// fleet connected, per stream.
func (f *FloorResult) PeakPerStream() float64 {
	return perStream(f.Idle.RSSPeak, f.RSSBefore, f.N)
}

// runFloor starts the floor server, connects cfg.N fleet workers, waits
// cfg.Settle and reads its RSS, then keeps the fleet idle for the same
// window as the hub's.
func runFloor(ctx context.Context, cfg FleetRunConfig, logf func(string, ...any)) (*FloorResult, error) {
	n, parallel, settle := cfg.N, cfg.Parallel, cfg.Settle
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), floorEnv+"=1", floorIntervalEnv+"="+cfg.floorInterval.String(),
		floorGridEnv+"="+cfg.floorGrid.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start floor server: %w", err)
	}
	readerDone := make(chan struct{})
	defer func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // closes stdout: the line reader below ends
		<-readerDone
	}()
	lines := bufio.NewReader(stdout)
	line, err := lines.ReadString('\n')
	if err != nil {
		close(readerDone)
		return nil, fmt.Errorf("floor server address: %w", err)
	}
	var gcs, allocated atomic.Int64
	gcs.Store(-1)
	go func() { // ends when the deferred Wait closes stdout
		defer close(readerDone)
		for {
			l, err := lines.ReadString('\n')
			if err != nil {
				return
			}
			var n, b int64
			if _, err := fmt.Sscanf(l, "gc %d %d", &n, &b); err == nil {
				allocated.Store(b)
				gcs.Store(n)
			}
		}
	}()
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if !ok {
		return nil, fmt.Errorf("floor server said %q, want its address", line)
	}
	res := &FloorResult{N: n}
	if res.RSSBefore, err = RSS(cmd.Process.Pid); err != nil {
		return nil, err
	}
	fleet := StartFleet(FleetConfig{Addr: addr, N: n, Parallel: parallel, Prefix: "floor"})
	defer fleet.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = fleet.WaitRegistered(rctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("floor fleet: %w", err)
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.RSSAfter, err = RSS(cmd.Process.Pid); err != nil {
		return nil, err
	}
	res.RSSPerStream = perStream(res.RSSAfter, res.RSSBefore, n)
	hb0 := fleet.Stats().Heartbeats
	_, res.Idle, err = steadyWindow(ctx, cmd.Process.Pid, func(context.Context) (int, float64, error) {
		n := gcs.Load()
		if n < 0 {
			return 0, 0, errors.New("the floor server has not reported its GCs")
		}
		return int(n), float64(allocated.Load()), nil
	}, cfg, res.RSSBefore, "bare grpc-go server", logf)
	res.Idle.Heartbeats = fleet.Stats().Heartbeats - hb0
	return res, err
}
