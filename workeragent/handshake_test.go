package workeragent

import (
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protover"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// Register carries the protocol version and features, or neither for an
// agent speaking as a worker from before the handshake.
func TestRegisterProtocolVersion(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cfg          Config
		wantVersion  uint32
		wantFeatures bool
	}{
		{name: "current", wantVersion: protover.Current, wantFeatures: true},
		{name: "claimed", cfg: Config{ProtocolVersion: 7}, wantVersion: 7, wantFeatures: true},
		{name: "unnumbered", cfg: Config{UnnumberedProtocol: true}, wantVersion: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{})
			cfg := tc.cfg
			cfg.HubAddrs = []string{hub.Addr}
			startAgent(t, cfg, executor.Noop{})
			reg := hub.NextStream(t, wait).Register
			if reg.GetProtocolVersion() != tc.wantVersion {
				t.Errorf("Register.protocol_version = %d, want %d", reg.GetProtocolVersion(), tc.wantVersion)
			}
			if got := slices.Contains(reg.GetFeatures(), protover.FeatureDrainReject); got != tc.wantFeatures {
				t.Errorf("Register.features = %v, want %q present: %v", reg.GetFeatures(), protover.FeatureDrainReject, tc.wantFeatures)
			}
		})
	}
}

// refusingHub answers every Connect with the refusal a hub gives a worker
// protocol version it does not speak, and records when each came.
type refusingHub struct {
	blacktreev1.UnimplementedWorkerServiceServer
	mu       sync.Mutex
	attempts []time.Time
}

func (h *refusingHub) Connect(stream grpc.BidiStreamingServer[blacktreev1.WorkerMessage, blacktreev1.HubMessage]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	h.mu.Lock()
	h.attempts = append(h.attempts, time.Now())
	h.mu.Unlock()
	return status.Error(codes.FailedPrecondition, "worker protocol version 1 is too old: this hub speaks versions 2 to 3; upgrade the worker")
}

func (h *refusingHub) times() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.attempts)
}

// A refused protocol version is logged with the hub's message and retried
// only after BackoffMax, not at the usual short delays.
func TestProtocolRefusedBacksOffToMax(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rh := &refusingHub{}
	blacktreev1.RegisterWorkerServiceServer(srv, rh)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	const backoffMax = 400 * time.Millisecond
	r := startAgent(t, Config{HubAddrs: []string{lis.Addr().String()}, BackoffMin: time.Millisecond, BackoffMax: backoffMax}, executor.Noop{})
	eventually(t, "two attempts", func() bool { return len(rh.times()) >= 2 })
	at := rh.times()
	if gap := at[1].Sub(at[0]); gap < backoffMax {
		t.Errorf("second attempt %v after the refusal, want at least BackoffMax %v", gap, backoffMax)
	}
	for _, want := range []string{"refused this worker's protocol version", "versions 2 to 3"} {
		if !strings.Contains(r.logs.String(), want) {
			t.Errorf("agent logs lack %q:\n%s", want, r.logs.String())
		}
	}
}
