package hub

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protover"
)

// A worker from before the handshake (no version) and a current one both
// register and get jobs; Registered carries the hub's versions and
// features, and ListWorkers each session's version.
func TestHandshakeOldAndNewWorkersCoexist(t *testing.T) {
	h, fb := startFakeHub(t, nil)
	addr := h.GRPCAddr().String()
	old := dialWorker(t, addr, &blacktreev1.Register{WorkerId: "old"}, false)
	cur := dialWorker(t, addr, &blacktreev1.Register{WorkerId: "new", ProtocolVersion: protover.Current,
		Features: []string{protover.FeatureDrainReject}}, false)
	for _, w := range []*fakeWorker{old, cur} {
		r := w.reg
		if r.GetProtocolVersion() != protover.Current || r.GetMinProtocolVersion() != protover.Oldest ||
			!slices.Contains(r.GetFeatures(), protover.FeatureDrainRequeue) {
			t.Errorf("worker %s: Registered protocol_version %d, min %d, features %v; want %d, %d, %q", w.id,
				r.GetProtocolVersion(), r.GetMinProtocolVersion(), r.GetFeatures(), protover.Current, protover.Oldest, protover.FeatureDrainRequeue)
		}
	}
	for _, info := range h.manager.list() {
		if info.GetProtocolVersion() != protover.Unnumbered {
			t.Errorf("ListWorkers %s protocol_version = %d, want %d", info.GetWorkerId(), info.GetProtocolVersion(), protover.Unnumbered)
		}
	}
	// One job each: spread placement gives the second job to the other
	// idle worker while the first runs.
	a1 := deliver(t, fb, validJob("hs-1"))
	a2 := deliver(t, fb, validJob("hs-2"))
	got := map[string]string{}
	for _, w := range []*fakeWorker{old, cur} {
		id := w.expectRunJob().GetJobId()
		got[id] = w.id
		w.accept(id)
	}
	if len(got) != 2 {
		t.Fatalf("jobs by worker = %v, want hs-1 and hs-2 on different workers", got)
	}
	eventually(t, 5*time.Second, "both deliveries acked", func() bool { return a1.get() == "ack" && a2.get() == "ack" })
}

// A worker whose protocol version the hub does not speak is refused with
// FailedPrecondition, naming both versions, and counted.
func TestHandshakeRefusesUnsupportedVersion(t *testing.T) {
	h, _ := startFakeHub(t, nil)
	_, err := dialWorkerAs(t, h.GRPCAddr().String(), "", &blacktreev1.Register{WorkerId: "future", ProtocolVersion: 99}, false)
	if err == nil {
		t.Fatal("Register with protocol_version 99 got Registered, want a refusal")
	}
	st, _ := status.FromError(err) // unwraps to the stream's status
	if st.Code() != codes.FailedPrecondition {
		t.Errorf("refusal code = %v (%v), want FailedPrecondition", st.Code(), err)
	}
	for _, want := range []string{"99", "versions 1 to 1", "too new"} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("refusal %q does not contain %q", st.Message(), want)
		}
	}
	if n := counterValue(h.metrics.registerRefusals.WithLabelValues(refusedProtocol)); n != 1 {
		t.Errorf("blacktree_register_refused_total{reason=protocol} = %v, want 1", n)
	}
	if len(h.manager.list()) != 0 {
		t.Errorf("ListWorkers = %v after a refused Register, want none", h.manager.list())
	}
}

func TestHandshakeConfigRange(t *testing.T) {
	tests := []struct {
		name     string
		min, max uint32
		wantErr  bool
	}{
		{name: "defaults"},
		{name: "current only", min: protover.Current, max: protover.Current},
		{name: "beyond this build", max: protover.Current + 1, wantErr: true},
		{name: "inverted", min: protover.Current + 1, max: protover.Current, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{MinProtocolVersion: tt.min, MaxProtocolVersion: tt.max}
			err := c.setProtocolRange()
			if (err != nil) != tt.wantErr {
				t.Fatalf("setProtocolRange(%d, %d) = %v, want error %v", tt.min, tt.max, err, tt.wantErr)
			}
			if err == nil && (c.MinProtocolVersion == 0 || c.MaxProtocolVersion == 0) {
				t.Errorf("range after defaults = %d..%d, want both set", c.MinProtocolVersion, c.MaxProtocolVersion)
			}
		})
	}
}
