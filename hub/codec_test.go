package hub

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func wire(t testing.TB, m *blacktreev1.WorkerMessage) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func heartbeatFrame(hb *blacktreev1.Heartbeat) *blacktreev1.WorkerMessage {
	return &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: hb}}
}

// usedShell is what the receive loop holds after a busy, draining worker's
// heartbeat: the message nextFrame then empties.
func usedShell(t testing.TB) *blacktreev1.WorkerMessage {
	m := new(blacktreev1.WorkerMessage)
	if err := proto.Unmarshal(wire(t, heartbeatFrame(&blacktreev1.Heartbeat{
		SentAt: timestamppb.Now(), RunningJobIds: []string{"old-1", "old-2"}, Draining: true,
		Cache: &blacktreev1.CacheSummary{BuildKeys: []string{"old-key"}, SizeBytes: 9},
	})), m); err != nil {
		t.Fatal(err)
	}
	m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 98, protowire.VarintType), 1))
	return m
}

func codecCases(t testing.TB) []struct {
	name   string
	data   []byte
	reuses bool // the shell's Heartbeat struct must carry the result
} {
	hb := wire(t, heartbeatFrame(&blacktreev1.Heartbeat{SentAt: timestamppb.Now(), RunningJobIds: []string{"a", "b"}, Draining: true}))
	hbEmpty := wire(t, heartbeatFrame(&blacktreev1.Heartbeat{}))
	hbIDs := wire(t, heartbeatFrame(&blacktreev1.Heartbeat{RunningJobIds: []string{"c"}}))
	result := wire(t, &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{
		Response: &blacktreev1.JobResponse{JobId: "j1", Success: true}}}})
	accepted := wire(t, &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobAccepted{JobAccepted: &blacktreev1.JobAccepted{JobId: "j2"}}})
	unknownTop := protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "a frame type from the future")
	// A heartbeat whose Heartbeat carries field 77, unknown to this hub.
	inner := protowire.AppendVarint(protowire.AppendTag(nil, 77, protowire.VarintType), 5)
	hbWithInner := protowire.AppendBytes(protowire.AppendTag(nil, protowire.Number(heartbeatFieldNumber(t)), protowire.BytesType), inner)
	hbDraining := wire(t, heartbeatFrame(&blacktreev1.Heartbeat{Draining: true}))
	hbCache := wire(t, heartbeatFrame(&blacktreev1.Heartbeat{Cache: &blacktreev1.CacheSummary{
		BuildKeys: []string{"k1", "k2"}, BaseImages: []string{"debian:12"}, SizeBytes: 1 << 30}}))
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	return []struct {
		name   string
		data   []byte
		reuses bool
	}{
		{name: "heartbeat", data: hb, reuses: true},
		{name: "empty heartbeat", data: hbEmpty, reuses: true},
		{name: "heartbeat with job ids only", data: hbIDs, reuses: true},
		{name: "heartbeat with a cache summary", data: hbCache, reuses: true},
		{name: "heartbeat, then one with a cache summary", data: cat(hb, hbCache), reuses: true},
		{name: "two heartbeats merge", data: cat(hb, hbIDs), reuses: true},
		{name: "heartbeat with an unknown field inside", data: hbWithInner, reuses: true},
		{name: "heartbeat twice, the second with an unknown field inside", data: cat(hbDraining, hbWithInner), reuses: true},
		{name: "empty frame", data: nil},
		{name: "unknown frame type only", data: unknownTop},
		{name: "heartbeat and an unknown top-level field", data: cat(hb, unknownTop)},
		{name: "job result", data: result},
		{name: "job accepted", data: accepted},
		{name: "heartbeat then job result", data: cat(hb, result)},
		{name: "job result then heartbeat", data: cat(result, hb)},
	}
}

// heartbeatFieldNumber is WorkerMessage's field number for heartbeat.
func heartbeatFieldNumber(t testing.TB) int {
	fd := (&blacktreev1.WorkerMessage{}).ProtoReflect().Descriptor().Fields().ByName("heartbeat")
	if fd == nil {
		t.Fatal("WorkerMessage has no heartbeat field")
	}
	return int(fd.Number())
}

// TestFrameCodecMatchesProto decodes every case into a used heartbeat
// shell through frameCodec and into a new message through proto.Unmarshal:
// the results must be equal, and heartbeats must land in the shell's own
// structs.
func TestFrameCodecMatchesProto(t *testing.T) {
	c := newFrameCodec()
	for _, tt := range codecCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			want := new(blacktreev1.WorkerMessage)
			wantErr := proto.Unmarshal(tt.data, want)

			m := nextFrame(usedShell(t))
			if !isHeartbeatShell(m) {
				t.Fatalf("nextFrame(used heartbeat) = %v, want a heartbeat shell", m)
			}
			shellHB := m.GetHeartbeat()
			err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(tt.data)}, m)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("Unmarshal() error = %v, proto.Unmarshal error = %v", err, wantErr)
			}
			if err != nil {
				return
			}
			if !proto.Equal(m, want) {
				t.Errorf("Unmarshal() = %v, want %v (proto.Unmarshal)", m, want)
			}
			if tt.reuses && m.GetHeartbeat() != shellHB {
				t.Errorf("Unmarshal() decoded into a new Heartbeat, want the shell's")
			}
		})
	}
}

func TestNextFrame(t *testing.T) {
	result := &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{}}}
	tests := []struct {
		name      string
		prev      *blacktreev1.WorkerMessage
		wantReuse bool
	}{
		{name: "first frame", prev: nil},
		{name: "after a heartbeat", prev: usedShell(t), wantReuse: true},
		{name: "after a job result (the dispatcher keeps it)", prev: result},
		{name: "after an empty frame", prev: new(blacktreev1.WorkerMessage)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nextFrame(tt.prev)
			if reused := got == tt.prev; reused != tt.wantReuse {
				t.Fatalf("nextFrame() reused = %v, want %v", reused, tt.wantReuse)
			}
			if tt.prev == result && result.GetJobResult() == nil {
				t.Errorf("nextFrame() changed the previous job result")
			}
			if tt.wantReuse && !isHeartbeatShell(got) {
				t.Errorf("nextFrame() = %v, want an emptied heartbeat", got)
			}
			if !tt.wantReuse && got.GetFrame() != nil {
				t.Errorf("nextFrame() = %v, want an empty message", got)
			}
		})
	}
}

// TestFrameCodecAllocs: decoding a heartbeat into a shell allocates less
// than grpc-go's codec decoding it into a new message (the point of it).
func TestFrameCodecAllocs(t *testing.T) {
	c := newFrameCodec()
	data := wire(t, heartbeatFrame(&blacktreev1.Heartbeat{SentAt: timestamppb.Now()}))
	shell := nextFrame(usedShell(t))
	reused := testing.AllocsPerRun(200, func() {
		shell = nextFrame(shell)
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, shell); err != nil {
			t.Fatal(err)
		}
	})
	fresh := testing.AllocsPerRun(200, func() {
		m := new(blacktreev1.WorkerMessage)
		if err := c.proto.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, m); err != nil {
			t.Fatal(err)
		}
	})
	if reused >= fresh {
		t.Errorf("allocations per heartbeat: shell %v, new message %v; want fewer into the shell", reused, fresh)
	}
	t.Logf("allocations per heartbeat: shell %v, new message %v", reused, fresh)
}

func FuzzFrameCodec(f *testing.F) {
	for _, tt := range codecCases(f) {
		f.Add(tt.data)
	}
	c := newFrameCodec()
	f.Fuzz(func(t *testing.T, data []byte) {
		want := new(blacktreev1.WorkerMessage)
		wantErr := proto.Unmarshal(data, want)
		m := nextFrame(usedShell(t))
		err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, m)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("Unmarshal() error = %v, proto.Unmarshal error = %v", err, wantErr)
		}
		if err == nil && !proto.Equal(m, want) {
			t.Fatalf("Unmarshal() = %v, want %v", m, want)
		}
	})
}
