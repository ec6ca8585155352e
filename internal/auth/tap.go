package auth

import (
	"context"

	"google.golang.org/grpc/tap"
)

// TapHandle authenticates a call from its headers before grpc-go creates
// its stream or reads any of its messages (install it with
// grpc.InTapHandle): a refused call costs the server no stream, no
// handler goroutine and no decoding, and a rate-limited peer is refused
// before any token is compared. The context it returns carries the
// Identity, so the interceptors, when also installed, do not check the
// call again. Errors are gRPC status errors, as Authenticate's.
//
// It runs on the connection's reader goroutine, so it must not block: it
// does only the hashing and comparisons Authenticate does.
func (a *Authenticator) TapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	return a.authenticate(ctx, info.FullMethodName)
}
