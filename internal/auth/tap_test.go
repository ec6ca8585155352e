package auth

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TapHandle alone (no interceptors) authenticates every call from its
// headers: the handlers see the Identity, refused calls never reach them,
// health stays open, and past the failure limit even a right token is
// refused.
func TestTapHandle(t *testing.T) {
	workers, admin := tokenFiles(t)
	e := startEnvWired(t, Config{WorkerTokensFile: workers, AdminTokenFile: admin, MaxFailuresPerMinute: 2},
		func(a *Authenticator) []grpc.ServerOption { return []grpc.ServerOption{grpc.InTapHandle(a.TapHandle)} })
	ctx := testCtx(t)
	if w, err := e.listWorkers(ctx, bearerOpt(tokAdmin)); err != nil || w.GetName() != "admin" {
		t.Errorf("ListWorkers with the admin token = %v, %v, want the handler to see Identity admin", w, err)
	}
	if reg, _, err := e.connect(t, ctx, bearerOpt(tokA)); err != nil || reg.GetWorkerName() != "w1" || reg.GetSessionId() != KindToken {
		t.Errorf("Connect with a worker token = %v, %v, want Identity w1/token", reg, err)
	}
	if err := e.health(ctx); err != nil {
		t.Errorf("health without a token = %v, want served", err)
	}
	for _, opt := range []grpc.CallOption{bearerOpt(tokA), bearerOpt("nope-nope-nope-nope")} {
		if _, err := e.listWorkers(ctx, opt); status.Code(err) != codes.Unauthenticated {
			t.Errorf("ListWorkers with a wrong token = %v, want Unauthenticated (not Internal from the handler)", err)
		}
	}
	if _, err := e.listWorkers(ctx, bearerOpt(tokAdmin)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("ListWorkers with the admin token past the failure limit = %v, want ResourceExhausted", err)
	}
}
