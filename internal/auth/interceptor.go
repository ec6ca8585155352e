package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/blacktree/blacktree/internal/redact"
	"github.com/blacktree/blacktree/internal/tlsutil"
)

// Method prefixes and their policies.
const (
	workerPrefix = "/blacktree.v1.WorkerService/"
	adminPrefix  = "/blacktree.v1.AdminService/"
)

// openPrefixes need no credentials. Server reflection is not open: it
// needs the admin token like the admin API (grpcurl sends its -H headers
// with reflection requests too).
var openPrefixes = []string{
	"/grpc.health.v1.Health/",
}

type policy int

const (
	policyOpen policy = iota
	policyWorker
	policyAdmin
)

func (p policy) String() string {
	switch p {
	case policyOpen:
		return "open"
	case policyWorker:
		return "worker"
	default:
		return "admin"
	}
}

// policyFor classifies a full method name. Anything not known to be worker
// or open needs the admin token.
func policyFor(fullMethod string) policy {
	switch {
	case strings.HasPrefix(fullMethod, workerPrefix):
		return policyWorker
	case strings.HasPrefix(fullMethod, adminPrefix):
		return policyAdmin
	}
	for _, p := range openPrefixes {
		if strings.HasPrefix(fullMethod, p) {
			return policyOpen
		}
	}
	return policyAdmin
}

// Messages callers see. They say what to send, never what was sent.
const (
	msgMissing     = "missing credentials: send metadata 'authorization: Bearer <token>'"
	msgMalformed   = "malformed authorization metadata: want exactly one 'authorization: Bearer <token>'"
	msgBadWorker   = "invalid worker token"
	msgBadAdmin    = "invalid admin token"
	msgNoAdmin     = "admin API disabled: the hub has no --admin-token-file"
	msgRateLimited = "too many failed authentication attempts from this address; retry in a minute"
)

// UnaryInterceptor authenticates unary calls (the admin API, health).
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor authenticates streaming calls (WorkerService/Connect).
// The check happens once, when the stream starts.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
	}
}

// identityStream is a ServerStream whose Context carries the Identity.
type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }

// Authenticate checks the credentials in ctx for fullMethod and returns ctx
// carrying the caller's Identity, or a gRPC status error
// (Unauthenticated, or ResourceExhausted when the peer is rate limited).
// The interceptors call it; it is exported for servers that wire
// authentication another way.
func (a *Authenticator) Authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	return a.authenticate(ctx, fullMethod)
}

func (a *Authenticator) authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	pol := policyFor(fullMethod)
	if pol == policyOpen {
		return ctx, nil
	}
	if _, done := IdentityFromContext(ctx); done {
		return ctx, nil // TapHandle authenticated the call already
	}
	addr, ip := peerAddr(ctx)
	if a.limiter.limited(ip) {
		a.logger.Debug("authentication refused: rate limited", "method", fullMethod, "peer", addr)
		return nil, status.Error(codes.ResourceExhausted, msgRateLimited)
	}
	id, secret, msg := a.check(ctx, pol)
	if msg != "" {
		nowLimited := a.limiter.fail(ip)
		a.logger.Warn("authentication failed", "method", fullMethod, "peer", addr,
			"reason", msg, "token", redact.Mask(secret), "rate_limited", nowLimited)
		return nil, status.Error(codes.Unauthenticated, msg)
	}
	a.logger.Debug("authenticated", "method", fullMethod, "peer", addr,
		"name", id.Name, "kind", id.Kind, "token", id.Fingerprint)
	return WithIdentity(ctx, id), nil
}

// check decides. On failure it returns the message for the caller and the
// presented secret (for its fingerprint in the log; "" if none).
func (a *Authenticator) check(ctx context.Context, pol policy) (id Identity, secret, failure string) {
	set := a.tokens.Load()
	secret, present, malformed := bearer(ctx)
	if malformed {
		return Identity{}, "", msgMalformed
	}
	if present {
		// Insecure mode with nothing configured to check against: the
		// token cannot be wrong.
		unchecked := a.cfg.InsecureNoAuth &&
			(pol == policyWorker && len(set.workers) == 0 || pol == policyAdmin && set.admin == nil)
		switch {
		case unchecked:
			return Identity{Kind: KindInsecure}, "", ""
		case pol == policyWorker:
			if t, ok := matchWorker(set, secret); ok {
				return Identity{Name: t.name, Kind: KindToken, Fingerprint: t.fingerprint}, secret, ""
			}
			return Identity{}, secret, msgBadWorker
		default:
			if set.admin == nil {
				return Identity{}, secret, msgNoAdmin
			}
			if matchAdmin(set, secret) {
				return Identity{Name: set.admin.name, Kind: KindToken, Fingerprint: set.admin.fingerprint}, secret, ""
			}
			return Identity{}, secret, msgBadAdmin
		}
	}
	if pol == policyWorker && a.cfg.AllowMTLSIdentity {
		if id, ok := mtlsIdentity(ctx); ok {
			return id, "", ""
		}
	}
	if a.cfg.InsecureNoAuth {
		return Identity{Kind: KindInsecure}, "", ""
	}
	if pol == policyAdmin && set.admin == nil {
		return Identity{}, "", msgNoAdmin
	}
	return Identity{}, "", msgMissing
}

// bearer extracts the bearer token from the call's metadata.
func bearer(ctx context.Context) (secret string, present, malformed bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", false, false
	case len(vals) > 1:
		return "", false, true
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false, true
	}
	secret = strings.TrimSpace(rest)
	if secret == "" {
		return "", false, true
	}
	return secret, true, false
}

// mtlsIdentity names the caller by its verified client certificate, when
// the certificate carries the worker role (tlsutil.WorkerRoleURI).
func mtlsIdentity(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	leaf := info.State.VerifiedChains[0][0]
	name := certName(leaf)
	if name == "" || !tlsutil.HasWorkerRole(leaf) {
		return Identity{}, false
	}
	sum := sha256.Sum256(leaf.Raw)
	return Identity{Name: name, Kind: KindMTLS, Fingerprint: "sha256:" + hex.EncodeToString(sum[:4])}, true
}

// certName is a certificate's Common Name, or else its first DNS SAN.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}

// peerAddr returns the caller's address and the IP the rate limit counts.
func peerAddr(ctx context.Context) (addr, ip string) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown", "unknown"
	}
	addr = p.Addr.String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return addr, host
	}
	return addr, addr
}
