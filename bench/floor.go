package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// The floor is the memory baseline of the fleet measurement: a bare
// grpc-go server with the hub's transport settings (buffers, fixed
// windows, no HPACK table) whose Connect handler answers Registered and
// then only receives, on the handler goroutine — the least any grpc-go
// server can hold per worker stream. It runs as its own process (btbench
// re-executed with floorEnv set) so that its RSS is its own.

const floorEnv = "BTBENCH_GRPC_FLOOR_SERVER"

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
	s := grpc.NewServer(
		grpc.ReadBufferSize(8<<10), grpc.WriteBufferSize(8<<10), grpc.SharedWriteBuffer(true),
		grpc.InitialWindowSize(1<<20), grpc.InitialConnWindowSize(1<<20), grpc.HeaderTableSize(0),
	)
	blacktreev1.RegisterWorkerServiceServer(s, floorService{})
	fmt.Printf("listening %s\n", lis.Addr())
	go func() {
		// Exit with the parent: it closes our stdin.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}()
	_ = s.Serve(lis)
	os.Exit(0)
}

type floorService struct {
	blacktreev1.UnimplementedWorkerServiceServer
}

func (floorService) Connect(stream blacktreev1.WorkerService_ConnectServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
		SessionId: "floor", HeartbeatInterval: durationpb.New(5 * time.Second), HubId: "floor",
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
	RSSPerStream        float64 // bytes
}

// runFloor starts the floor server, connects n fleet workers, waits
// settle and returns its RSS per stream.
func runFloor(ctx context.Context, n, parallel int, settle time.Duration) (*FloorResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), floorEnv+"=1")
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
	defer func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("floor server address: %w", err)
	}
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
	res.RSSPerStream = float64(res.RSSAfter-res.RSSBefore) / float64(n)
	return res, nil
}
