package hub

import (
	"context"

	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"
)

// connLimits are the connection registry's limits from the Config
// (docs/SECURITY.md#limits).
func (h *Hub) connLimits() connLimits {
	l := connLimits{
		total:      max(h.cfg.MaxConns, 0),
		perIP:      max(h.cfg.MaxConnsPerIP, 0),
		refused:    h.metrics.connRefused,
		idleClosed: h.metrics.connsIdleClosed.Inc,
	}
	if h.cfg.Authenticated != nil {
		l.unauthenticated = h.cfg.UnauthenticatedConnTimeout
	}
	return l
}

// tap is the gRPC server's InTapHandle: it runs Config.TapHandle on a
// call's headers, before grpc-go creates the stream or reads a message,
// and marks the call's connection authenticated when Config.Authenticated
// says the call is. It runs on the connection's reader goroutine: it must
// not block.
func (h *Hub) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if h.cfg.TapHandle != nil {
		var err error
		if ctx, err = h.cfg.TapHandle(ctx, info); err != nil {
			return nil, err
		}
	}
	if h.cfg.Authenticated != nil && h.cfg.Authenticated(ctx) {
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			h.conns.markAuthenticated(p.Addr.String())
		}
	}
	return ctx, nil
}
