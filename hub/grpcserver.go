package hub

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// hclogAdapter routes go-grpc-middleware logging to hclog. The middleware
// logs call metadata only (method, code, duration), never payloads.
func hclogAdapter(l hclog.Logger) logging.Logger {
	return logging.LoggerFunc(func(_ context.Context, lvl logging.Level, msg string, fields ...any) {
		switch lvl {
		case logging.LevelDebug:
			l.Debug(msg, fields...)
		case logging.LevelInfo:
			l.Debug(msg, fields...) // one line per RPC is debug noise at info
		case logging.LevelWarn:
			l.Warn(msg, fields...)
		default:
			l.Error(msg, fields...)
		}
	})
}

// newGRPCServer builds the gRPC server with keepalive, size limits,
// interceptors (recovery, logging, then the configured ones), the hub's
// services, health and reflection.
func (h *Hub) newGRPCServer() (*grpc.Server, *health.Server) {
	glog := h.log.Named("grpc")
	recover := recovery.WithRecoveryHandlerContext(func(_ context.Context, p any) error {
		// The panic value may quote request data: log its type and the stack.
		glog.Error("panic in rpc handler", "panic", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	streams := append([]grpc.StreamServerInterceptor{
		recovery.StreamServerInterceptor(recover),
		// Not on Connect: a worker's stream lives for days, the session
		// logs its own start and end, and the middleware would hold
		// per-stream state and wrap every frame (memory per idle worker,
		// docs/design/idle-worker-memory.md).
		selector.StreamServerInterceptor(logging.StreamServerInterceptor(hclogAdapter(glog), logOpts...),
			selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
				return c.FullMethod() != blacktreev1.WorkerService_Connect_FullMethodName
			})),
	}, h.cfg.StreamInterceptors...)
	unaries := append([]grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(recover),
		logging.UnaryServerInterceptor(hclogAdapter(glog), logOpts...),
	}, h.cfg.UnaryInterceptors...)

	const flowWindow = 1 << 20
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// MaxConnectionIdle, MaxConnectionAge: 0 = never; a worker's
			// stream is meant to live for days.
			MaxConnectionIdle: 0,
			MaxConnectionAge:  0,
			// Time: ping a connection that has been quiet this long, so a
			// silent network (no FIN, no RST) is noticed.
			Time: h.cfg.KeepaliveTime,
			// Timeout: close the connection when the ping is not answered
			// within this (grpc-go also sets TCP_USER_TIMEOUT to it).
			Timeout: h.cfg.KeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			// MinTime: clients may ping this often. The default (5 min) would
			// cut off workers that ping every 10s with GOAWAY too_many_pings
			// (docs/protocol.md#keepalive); keep it below the workers' ping
			// interval.
			MinTime: h.cfg.KeepaliveMinTime,
			// PermitWithoutStream: workers ping even between streams
			// (while reconnecting); allow it.
			PermitWithoutStream: true,
		}),
		grpc.MaxRecvMsgSize(h.cfg.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(h.cfg.MaxConcurrentStreams),
		// Per-connection buffers (docs/design/idle-worker-memory.md): small read buffer and a
		// shared write buffer keep an idle worker connection cheap.
		grpc.ReadBufferSize(h.cfg.ConnBufferSize),
		grpc.WriteBufferSize(h.cfg.ConnBufferSize),
		grpc.SharedWriteBuffer(true),
		// Fixed flow-control windows. Left unset, grpc-go sizes windows
		// dynamically (BDP estimation) and sends a PING after data frames
		// to measure: one extra write per heartbeat per worker, ~20% of the
		// hub's heartbeat CPU with a large fleet
		// (docs/design/heartbeat-grid.md).
		// Setting them turns that off (grpc/grpc-go#9096). Windows are
		// credit, not memory: nothing is allocated up front.
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
		// No HPACK dynamic table for request headers: a worker sends
		// headers once per stream, so the table would never pay off, yet
		// it is kept for the connection's life (~1 KiB per worker).
		grpc.HeaderTableSize(0),
		// grpc-go's proto codec, but heartbeats reuse their structs: less
		// garbage per heartbeat (frameCodec,
		// docs/design/idle-worker-memory.md).
		grpc.ForceServerCodecV2(frameCodec{proto: newFrameCodec().proto, maxRequest: h.cfg.MaxRequestMsgSize}),
		// Before authentication (docs/SECURITY.md#limits): the tap runs
		// on a call's headers before any message is read; a connection
		// must finish its TLS handshake and HTTP/2 preface in
		// HandshakeTimeout; headers are bounded.
		grpc.InTapHandle(h.tap),
		grpc.ConnectionTimeout(h.cfg.HandshakeTimeout),
		grpc.MaxHeaderListSize(h.cfg.MaxHeaderListSize),
		grpc.ChainStreamInterceptor(streams...),
		grpc.ChainUnaryInterceptor(unaries...),
	}
	if h.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(h.cfg.TLS)))
	}
	s := grpc.NewServer(opts...)
	blacktreev1.RegisterWorkerServiceServer(s, &workerService{h: h})
	blacktreev1.RegisterAdminServiceServer(s, &adminService{h: h})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return s, hs
}
