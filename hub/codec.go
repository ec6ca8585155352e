package hub

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// frameCodec is the hub's gRPC codec: grpc-go's proto codec, except for a
// WorkerMessage that the receive loop hands in as a heartbeat shell (see
// nextFrame). grpc-go's codec resets every message before decoding into
// it, so each heartbeat used to allocate its WorkerMessage, oneof wrapper
// and Heartbeat anew; an idle worker sends nothing else, and with a large
// idle fleet that garbage is what the hub's heap grows by between
// collections (docs/design/idle-worker-memory.md). A shell is decoded into with
// Merge instead, which keeps those three allocations, and the result is
// exactly what a fresh decode gives (TestFrameCodecMatchesProto).
//
// Every other message (admin, health and reflection requests) is refused
// undecoded past maxRequest bytes (Config.MaxRequestMsgSize); 0: no bound
// beyond grpc-go's MaxRecvMsgSize.
type frameCodec struct {
	proto      encoding.CodecV2
	maxRequest int
}

func newFrameCodec() frameCodec {
	return frameCodec{proto: encoding.GetCodecV2(protoenc.Name)}
}

// errRequestTooLarge: a request other than a worker frame is over
// Config.MaxRequestMsgSize.
var errRequestTooLarge = errors.New("request over the hub's size limit for requests")

// Name is "proto": the codec is only ever the hub's own decoding of it.
func (c frameCodec) Name() string { return c.proto.Name() }

// Marshal is grpc-go's.
func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

// Unmarshal decodes data into v; see frameCodec.
func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*blacktreev1.WorkerMessage)
	if !ok && c.maxRequest > 0 && data.Len() > c.maxRequest {
		return fmt.Errorf("%w: %d bytes, at most %d", errRequestTooLarge, data.Len(), c.maxRequest)
	}
	if !ok || !isHeartbeatShell(m) || data.Len() == 0 {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(buf.ReadOnlyData(), m); err != nil {
		return err
	}
	// WorkerMessage has no known field outside its frame oneof, so a
	// non-empty frame without unknown fields set a frame member, and the
	// shell's wrapper now holds exactly that frame. With unknown fields
	// (a frame type this hub does not know) the shell's heartbeat may be
	// left over: decode afresh.
	if len(m.ProtoReflect().GetUnknown()) > 0 {
		return proto.Unmarshal(buf.ReadOnlyData(), m)
	}
	return nil
}

// nextFrame returns the message the receive loop decodes the next frame
// into: prev emptied to a heartbeat shell when it held a heartbeat (the
// hub keeps nothing of a heartbeat once handled), else a new message (the
// dispatcher may keep references into other frames).
func nextFrame(prev *blacktreev1.WorkerMessage) *blacktreev1.WorkerMessage {
	f, ok := prev.GetFrame().(*blacktreev1.WorkerMessage_Heartbeat)
	if !ok || f.Heartbeat == nil {
		return new(blacktreev1.WorkerMessage)
	}
	proto.Reset(f.Heartbeat) // fields, sent_at and unknown fields; the struct stays
	prev.ProtoReflect().SetUnknown(nil)
	return prev
}

// isHeartbeatShell reports whether m is what nextFrame makes of a
// heartbeat: its frame an empty Heartbeat, no unknown fields.
func isHeartbeatShell(m *blacktreev1.WorkerMessage) bool {
	f, ok := m.GetFrame().(*blacktreev1.WorkerMessage_Heartbeat)
	if !ok || f.Heartbeat == nil || len(m.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	hb := f.Heartbeat
	return hb.SentAt == nil && len(hb.RunningJobIds) == 0 && !hb.Draining && len(hb.ProtoReflect().GetUnknown()) == 0
}
