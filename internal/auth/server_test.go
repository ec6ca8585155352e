package auth

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/syncbuf"
)

// workerSrv answers every WorkerMessage with a Registered frame naming the
// caller's Identity (WorkerName = Name, SessionId = Kind, HubId =
// Fingerprint).
type workerSrv struct {
	blacktreev1.UnimplementedWorkerServiceServer
}

func (workerSrv) Connect(stream grpc.BidiStreamingServer[blacktreev1.WorkerMessage, blacktreev1.HubMessage]) error {
	id, ok := IdentityFromContext(stream.Context())
	if !ok {
		return status.Error(codes.Internal, "no identity in context")
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		err := stream.Send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Registered{Registered: &blacktreev1.Registered{
			WorkerName: id.Name, SessionId: id.Kind, HubId: id.Fingerprint,
		}}})
		if err != nil {
			return err
		}
	}
}

// adminSrv answers ListWorkers with one WorkerInfo naming the caller
// (Name = Identity.Name, WorkerId = Kind).
type adminSrv struct {
	blacktreev1.UnimplementedAdminServiceServer
}

func (adminSrv) ListWorkers(ctx context.Context, _ *blacktreev1.ListWorkersRequest) (*blacktreev1.ListWorkersResponse, error) {
	id, ok := IdentityFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no identity in context")
	}
	return &blacktreev1.ListWorkersResponse{Workers: []*blacktreev1.WorkerInfo{{Name: id.Name, WorkerId: id.Kind}}}, nil
}

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is an Authenticator behind a real gRPC server on loopback.
type env struct {
	auth  *Authenticator
	conn  *grpc.ClientConn
	logs  *syncbuf.Buffer
	clock *fakeClock
}

// startEnv serves WorkerService, AdminService and health with a's
// interceptors. serverOpts add e.g. TLS; dialOpts replace the insecure
// default when given.
func startEnv(t *testing.T, cfg Config, serverOpts []grpc.ServerOption, dialOpts ...grpc.DialOption) *env {
	t.Helper()
	return startEnvWired(t, cfg, func(a *Authenticator) []grpc.ServerOption {
		return append(serverOpts,
			grpc.ChainUnaryInterceptor(a.UnaryInterceptor()),
			grpc.ChainStreamInterceptor(a.StreamInterceptor()))
	}, dialOpts...)
}

// startEnvWired is startEnv with the server options wire returns for a.
func startEnvWired(t *testing.T, cfg Config, wire func(a *Authenticator) []grpc.ServerOption, dialOpts ...grpc.DialOption) *env {
	t.Helper()
	logs := &syncbuf.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	a, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	a.now = clock.now

	srv := grpc.NewServer(wire(a)...)
	blacktreev1.RegisterWorkerServiceServer(srv, workerSrv{})
	blacktreev1.RegisterAdminServiceServer(srv, adminSrv{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	if len(dialOpts) == 0 {
		dialOpts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(lis.Addr().String(), dialOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{auth: a, conn: conn, logs: logs, clock: clock}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bearerOpt sends token as per-RPC credentials (over plaintext).
func bearerOpt(token string) grpc.CallOption {
	return grpc.PerRPCCredentials(BearerCredentials(token, false))
}

// connect opens a Connect stream, sends one frame and returns the
// Registered answer; the stream stays open until the test ends.
func (e *env) connect(t *testing.T, ctx context.Context, opts ...grpc.CallOption) (*blacktreev1.Registered, grpc.BidiStreamingClient[blacktreev1.WorkerMessage, blacktreev1.HubMessage], error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := blacktreev1.NewWorkerServiceClient(e.conn).Connect(ctx, opts...)
	if err != nil {
		return nil, nil, err
	}
	reg, err := roundTrip(stream)
	return reg, stream, err
}

func roundTrip(stream grpc.BidiStreamingClient[blacktreev1.WorkerMessage, blacktreev1.HubMessage]) (*blacktreev1.Registered, error) {
	if err := stream.Send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{}}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	msg, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return msg.GetRegistered(), nil
}

func (e *env) listWorkers(ctx context.Context, opts ...grpc.CallOption) (*blacktreev1.WorkerInfo, error) {
	resp, err := blacktreev1.NewAdminServiceClient(e.conn).ListWorkers(ctx, &blacktreev1.ListWorkersRequest{}, opts...)
	if err != nil {
		return nil, err
	}
	return resp.GetWorkers()[0], nil
}

func (e *env) health(ctx context.Context, opts ...grpc.CallOption) error {
	_, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{}, opts...)
	return err
}

func tokenFiles(t *testing.T) (workers, admin string) {
	t.Helper()
	dir := t.TempDir()
	return writeFile(t, dir, "workers", "w1:"+tokA+"\n"+tokB+"\n"), writeFile(t, dir, "admin", tokAdmin+"\n")
}

// withMD sends raw authorization metadata values.
func withMD(ctx context.Context, vals ...string) context.Context {
	for _, v := range vals {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
	}
	return ctx
}

func TestInterceptors(t *testing.T) {
	workers, admin := tokenFiles(t)
	tests := []struct {
		name     string
		cfg      Config
		call     string   // worker, admin, health
		md       []string // raw authorization values
		wantCode codes.Code
		wantName string
		wantKind string
		wantMsg  string
	}{
		{
			name:     "worker no token",
			call:     "worker",
			wantCode: codes.Unauthenticated,
			wantMsg:  msgMissing,
		},
		{
			name:     "worker wrong token",
			call:     "worker",
			md:       []string{"Bearer " + tokC},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgBadWorker,
		},
		{
			name:     "worker named token",
			call:     "worker",
			md:       []string{"Bearer " + tokA},
			wantName: "w1",
			wantKind: KindToken,
		},
		{
			name:     "worker unnamed token",
			call:     "worker",
			md:       []string{"bearer  " + tokB},
			wantName: "",
			wantKind: KindToken,
		},
		{
			name:     "worker admin token refused",
			call:     "worker",
			md:       []string{"Bearer " + tokAdmin},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgBadWorker,
		},
		{
			name:     "worker basic scheme",
			call:     "worker",
			md:       []string{"Basic " + tokA},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgMalformed,
		},
		{
			name:     "worker two headers",
			call:     "worker",
			md:       []string{"Bearer " + tokA, "Bearer " + tokB},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgMalformed,
		},
		{
			name:     "worker empty bearer",
			call:     "worker",
			md:       []string{"Bearer "},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgMalformed,
		},
		{
			name:     "admin token",
			call:     "admin",
			md:       []string{"Bearer " + tokAdmin},
			wantName: "admin",
			wantKind: KindToken,
		},
		{
			name:     "admin no token",
			call:     "admin",
			wantCode: codes.Unauthenticated,
			wantMsg:  msgMissing,
		},
		{
			name:     "admin worker token refused",
			call:     "admin",
			md:       []string{"Bearer " + tokA},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgBadAdmin,
		},
		{
			name:     "admin disabled without file",
			cfg:      Config{WorkerTokensFile: workers},
			call:     "admin",
			md:       []string{"Bearer " + tokAdmin},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgNoAdmin,
		},
		{
			name:     "admin disabled no token",
			cfg:      Config{WorkerTokensFile: workers},
			call:     "admin",
			wantCode: codes.Unauthenticated,
			wantMsg:  msgNoAdmin,
		},
		{
			name: "health open",
			call: "health",
		},
		{
			name: "health open with junk",
			call: "health",
			md:   []string{"Bearer nonsense"},
		},
		{
			name:     "insecure worker no token",
			cfg:      Config{InsecureNoAuth: true},
			call:     "worker",
			wantKind: KindInsecure,
		},
		{
			name:     "insecure admin no token",
			cfg:      Config{InsecureNoAuth: true},
			call:     "admin",
			wantKind: KindInsecure,
		},
		{
			name:     "insecure unchecked token",
			cfg:      Config{InsecureNoAuth: true},
			call:     "worker",
			md:       []string{"Bearer " + tokC},
			wantKind: KindInsecure,
		},
		{
			name:     "insecure still checks tokens",
			cfg:      Config{InsecureNoAuth: true, WorkerTokensFile: workers},
			call:     "worker",
			md:       []string{"Bearer " + tokC},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgBadWorker,
		},
		{
			name:     "insecure valid token named",
			cfg:      Config{InsecureNoAuth: true, WorkerTokensFile: workers},
			call:     "worker",
			md:       []string{"Bearer " + tokA},
			wantName: "w1",
			wantKind: KindToken,
		},
		{
			name:     "insecure admin still checked",
			cfg:      Config{InsecureNoAuth: true, WorkerTokensFile: workers, AdminTokenFile: admin},
			call:     "admin",
			md:       []string{"Bearer " + tokA},
			wantCode: codes.Unauthenticated,
			wantMsg:  msgBadAdmin,
		},
		{
			name:     "mtls allowed but plaintext",
			cfg:      Config{AllowMTLSIdentity: true, WorkerTokensFile: workers},
			call:     "worker",
			wantCode: codes.Unauthenticated,
			wantMsg:  msgMissing,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg == (Config{}) {
				cfg = Config{WorkerTokensFile: workers, AdminTokenFile: admin}
			}
			e := startEnv(t, cfg, nil)
			ctx := withMD(testCtx(t), tt.md...)
			var name, kind string
			var err error
			switch tt.call {
			case "worker":
				var reg *blacktreev1.Registered
				reg, _, err = e.connect(t, ctx)
				name, kind = reg.GetWorkerName(), reg.GetSessionId()
			case "admin":
				var w *blacktreev1.WorkerInfo
				w, err = e.listWorkers(ctx)
				name, kind = w.GetName(), w.GetWorkerId()
			case "health":
				err = e.health(ctx)
			}
			st := status.Convert(err)
			if st.Code() != tt.wantCode {
				t.Fatalf("%s call = %v, want code %v", tt.call, err, tt.wantCode)
			}
			if tt.wantMsg != "" && st.Message() != tt.wantMsg {
				t.Errorf("%s call message = %q, want %q", tt.call, st.Message(), tt.wantMsg)
			}
			if err != nil {
				return
			}
			if name != tt.wantName {
				t.Errorf("identity name = %q, want %q", name, tt.wantName)
			}
			if kind != tt.wantKind {
				t.Errorf("identity kind = %q, want %q", kind, tt.wantKind)
			}
		})
	}
}

func TestLogsNeverHoldTokens(t *testing.T) {
	workers, admin := tokenFiles(t)
	e := startEnv(t, Config{WorkerTokensFile: workers, AdminTokenFile: admin}, nil)
	ctx := testCtx(t)
	for _, tok := range []string{tokA, tokC, tokAdmin} {
		e.connect(t, ctx, bearerOpt(tok))
		e.listWorkers(ctx, bearerOpt(tok))
	}
	logs := e.logs.String()
	for _, tok := range []string{tokA, tokC, tokAdmin} {
		if strings.Contains(logs, tok) {
			t.Errorf("logs contain a token:\n%s", logs)
		}
	}
	for _, want := range []string{"authentication failed", "peer=127.0.0.1:", "token=sha256:", "reason=\"invalid worker token\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	workers := writeFile(t, dir, "workers", "w1:"+tokA+"\nw2:"+tokB+"\n")
	e := startEnv(t, Config{WorkerTokensFile: workers}, nil)
	ctx := testCtx(t)

	_, streamA, err := e.connect(t, ctx, bearerOpt(tokA))
	if err != nil {
		t.Fatalf("Connect(w1) = %v, want success", err)
	}

	// Revoke w1, add w3.
	writeFile(t, dir, "workers", "w2:"+tokB+"\nw3:"+tokC+"\n")
	if err := e.auth.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if _, _, err := e.connect(t, ctx, bearerOpt(tokA)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Connect(revoked) = %v, want Unauthenticated", err)
	}
	if reg, _, err := e.connect(t, ctx, bearerOpt(tokC)); err != nil || reg.GetWorkerName() != "w3" {
		t.Errorf("Connect(new token) = %v, %v, want w3", reg, err)
	}
	// The stream connected before the reload still works.
	if reg, err := roundTrip(streamA); err != nil || reg.GetWorkerName() != "w1" {
		t.Errorf("existing stream after Reload: roundTrip() = %v, %v, want w1", reg, err)
	}

	// A broken file keeps the old set.
	writeFile(t, dir, "workers", "w2:"+tokB+"\nw2:"+tokC+"\n")
	err = e.auth.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 2: duplicate name") || !strings.Contains(err.Error(), "keeping the previous ones") {
		t.Errorf("Reload(bad file) = %v, want duplicate name on line 2", err)
	}
	if reg, _, err := e.connect(t, ctx, bearerOpt(tokC)); err != nil || reg.GetWorkerName() != "w3" {
		t.Errorf("Connect after failed Reload = %v, %v, want w3 (old set kept)", reg, err)
	}
	if err := streamA.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := streamA.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv() after CloseSend = %v, want EOF", err)
	}
}

func TestRateLimit(t *testing.T) {
	workers, admin := tokenFiles(t)
	e := startEnv(t, Config{WorkerTokensFile: workers, AdminTokenFile: admin, MaxFailuresPerMinute: 3}, nil)
	ctx := testCtx(t)
	for i := range 3 {
		if _, _, err := e.connect(t, ctx, bearerOpt(tokC)); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("attempt %d: Connect(wrong) = %v, want Unauthenticated", i, err)
		}
	}
	// Limited now: even a valid token is refused before it is compared,
	// on either API. Health stays open.
	if _, _, err := e.connect(t, ctx, bearerOpt(tokA)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("Connect(valid) while limited = %v, want ResourceExhausted", err)
	}
	if _, err := e.listWorkers(ctx, bearerOpt(tokAdmin)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("ListWorkers(valid) while limited = %v, want ResourceExhausted", err)
	}
	if err := e.health(ctx); err != nil {
		t.Errorf("health while limited = %v, want nil", err)
	}
	e.clock.advance(time.Minute)
	if _, _, err := e.connect(t, ctx, bearerOpt(tokA)); err != nil {
		t.Errorf("Connect(valid) a minute later = %v, want success", err)
	}
}

func TestRateLimitOff(t *testing.T) {
	workers, _ := tokenFiles(t)
	e := startEnv(t, Config{WorkerTokensFile: workers, MaxFailuresPerMinute: -1}, nil)
	ctx := testCtx(t)
	for i := range DefaultMaxFailuresPerMinute + 2 {
		if _, _, err := e.connect(t, ctx, bearerOpt(tokC)); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("attempt %d: Connect(wrong) = %v, want Unauthenticated", i, err)
		}
	}
}

func TestBearerCredentialsRequireTLS(t *testing.T) {
	workers, _ := tokenFiles(t)
	e := startEnv(t, Config{WorkerTokensFile: workers}, nil)
	_, _, err := e.connect(t, testCtx(t), grpc.PerRPCCredentials(BearerCredentials(tokA, true)))
	if err == nil || !strings.Contains(err.Error(), "cannot send secure credentials on an insecure connection") {
		t.Errorf("Connect(requireTLS creds over plaintext) = %v, want a transport security error", err)
	}
	var c credentials.PerRPCCredentials = BearerCredentials(tokA, true)
	for _, s := range []string{
		// fmt of the credentials never shows the token.
		strings.Join([]string{c.(interface{ String() string }).String(), c.(interface{ GoString() string }).GoString()}, " "),
	} {
		if strings.Contains(s, tokA) {
			t.Errorf("credentials render as %q, holding the token", s)
		}
	}
}

func TestWithIdentity(t *testing.T) {
	if _, ok := IdentityFromContext(context.Background()); ok {
		t.Errorf("IdentityFromContext(empty) ok = true, want false")
	}
	want := Identity{Name: "w1", Kind: KindToken, Fingerprint: "sha256:00000000"}
	got, ok := IdentityFromContext(WithIdentity(context.Background(), want))
	if !ok || got != want {
		t.Errorf("IdentityFromContext() = %v, %v, want %v", got, ok, want)
	}
}

func TestPolicyFor(t *testing.T) {
	tests := []struct {
		name   string
		method string
		want   policy
	}{
		{name: "connect", method: blacktreev1.WorkerService_Connect_FullMethodName, want: policyWorker},
		{name: "admin", method: blacktreev1.AdminService_DrainWorker_FullMethodName, want: policyAdmin},
		{name: "health", method: "/grpc.health.v1.Health/Check", want: policyOpen},
		{name: "reflection needs admin", method: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", want: policyAdmin},
		{name: "reflection alpha needs admin", method: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", want: policyAdmin},
		{name: "unknown needs admin", method: "/other.Service/Method", want: policyAdmin},
		{name: "prefix trick", method: "/blacktree.v1.WorkerServiceX/Connect", want: policyAdmin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policyFor(tt.method); got != tt.want {
				t.Errorf("policyFor(%q) = %v, want %v", tt.method, got, tt.want)
			}
		})
	}
}

// StillAuthorized re-checks a call's credentials against the current token
// set: a token revoked by a reload no longer passes, others still do.
func TestStillAuthorized(t *testing.T) {
	dir := t.TempDir()
	workers := writeFile(t, dir, "workers", "w1:"+tokA+"\nw2:"+tokB+"\n")
	a, err := New(Config{WorkerTokensFile: workers}, nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	withToken := func(tok string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		before bool
		after  bool
	}{
		{name: "revoked token", ctx: withToken(tokA), before: true, after: false},
		{name: "kept token", ctx: withToken(tokB), before: true, after: true},
		{name: "no credentials", ctx: context.Background(), before: false, after: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.StillAuthorized(tc.ctx); got != tc.before {
				t.Errorf("StillAuthorized() before the reload = %v, want %v", got, tc.before)
			}
		})
	}
	writeFile(t, dir, "workers", "w2:"+tokB+"\n")
	if err := a.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{name: "revoked token", ctx: withToken(tokA), want: false},
		{name: "kept token", ctx: withToken(tokB), want: true},
	} {
		t.Run(tc.name+" after reload", func(t *testing.T) {
			if got := a.StillAuthorized(tc.ctx); got != tc.want {
				t.Errorf("StillAuthorized() after the reload = %v, want %v", got, tc.want)
			}
		})
	}
}
