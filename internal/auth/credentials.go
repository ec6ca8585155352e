package auth

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// BearerCredentials returns per-RPC credentials that send
// `authorization: Bearer <token>` on every call (the worker's Connect,
// btctl's admin calls). With requireTLS, grpc refuses to send them over a
// connection without transport security — pass true unless the operator
// chose plaintext (--insecure).
func BearerCredentials(token string, requireTLS bool) credentials.PerRPCCredentials {
	return bearerCreds{header: "Bearer " + token, requireTLS: requireTLS}
}

type bearerCreds struct {
	header     string
	requireTLS bool
}

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

func (b bearerCreds) RequireTransportSecurity() bool { return b.requireTLS }

// String keeps the token out of %v.
func (b bearerCreds) String() string { return "Bearer [REDACTED]" }

// GoString keeps the token out of %#v.
func (b bearerCreds) GoString() string { return "auth.bearerCreds{Bearer [REDACTED]}" }
