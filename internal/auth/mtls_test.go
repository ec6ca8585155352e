package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/blacktree/blacktree/internal/tlsutil"
	"github.com/blacktree/blacktree/internal/tlsutil/tlstest"
)

func TestMTLSIdentity(t *testing.T) {
	p := tlstest.Generate(t, t.TempDir())
	workers, admin := tokenFiles(t)
	srvCfg, err := tlsutil.ServerConfig(p.ServerCert, p.ServerKey, p.CACert)
	if err != nil {
		t.Fatal(err)
	}
	cliCfg, err := tlsutil.ClientConfig(p.CACert, p.ClientCert, p.ClientKey, "")
	if err != nil {
		t.Fatal(err)
	}
	serverOpts := []grpc.ServerOption{grpc.Creds(credentials.NewTLS(srvCfg))}
	dial := grpc.WithTransportCredentials(credentials.NewTLS(cliCfg))
	tls := func(token string) grpc.CallOption { return grpc.PerRPCCredentials(BearerCredentials(token, true)) }

	tests := []struct {
		name     string
		allow    bool
		call     string
		opts     []grpc.CallOption
		wantCode codes.Code
		wantName string
		wantKind string
	}{
		{
			name:     "certificate names the worker",
			allow:    true,
			call:     "worker",
			wantName: tlstest.ClientName,
			wantKind: KindMTLS,
		},
		{
			name:     "token wins over certificate",
			allow:    true,
			call:     "worker",
			opts:     []grpc.CallOption{tls(tokA)},
			wantName: "w1",
			wantKind: KindToken,
		},
		{
			name:     "wrong token not rescued by certificate",
			allow:    true,
			call:     "worker",
			opts:     []grpc.CallOption{tls(tokC)},
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "certificate does not open admin",
			allow:    true,
			call:     "admin",
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "admin token over tls",
			allow:    true,
			call:     "admin",
			opts:     []grpc.CallOption{tls(tokAdmin)},
			wantName: "admin",
			wantKind: KindToken,
		},
		{
			name:     "certificate identity not allowed",
			allow:    false,
			call:     "worker",
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "token over mtls without identity",
			allow:    false,
			call:     "worker",
			opts:     []grpc.CallOption{tls(tokA)},
			wantName: "w1",
			wantKind: KindToken,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t, Config{WorkerTokensFile: workers, AdminTokenFile: admin, AllowMTLSIdentity: tt.allow}, serverOpts, dial)
			ctx := testCtx(t)
			var name, kind string
			switch tt.call {
			case "worker":
				reg, _, err := e.connect(t, ctx, tt.opts...)
				if status.Code(err) != tt.wantCode {
					t.Fatalf("Connect() = %v, want %v", err, tt.wantCode)
				}
				name, kind = reg.GetWorkerName(), reg.GetSessionId()
				if tt.wantKind == KindMTLS && len(reg.GetHubId()) != len("sha256:")+8 {
					t.Errorf("fingerprint = %q, want sha256: and 8 hex digits", reg.GetHubId())
				}
			case "admin":
				w, err := e.listWorkers(ctx, tt.opts...)
				if status.Code(err) != tt.wantCode {
					t.Fatalf("ListWorkers() = %v, want %v", err, tt.wantCode)
				}
				name, kind = w.GetName(), w.GetWorkerId()
			}
			if name != tt.wantName || kind != tt.wantKind {
				t.Errorf("identity = %q/%q, want %q/%q", name, kind, tt.wantName, tt.wantKind)
			}
		})
	}
}

func TestCertName(t *testing.T) {
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{name: "common name", cert: &x509.Certificate{Subject: pkix.Name{CommonName: "w1"}, DNSNames: []string{"d1"}}, want: "w1"},
		{name: "first dns san", cert: &x509.Certificate{DNSNames: []string{"d1", "d2"}}, want: "d1"},
		{name: "neither", cert: &x509.Certificate{}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := certName(tt.cert); got != tt.want {
				t.Errorf("certName() = %q, want %q", got, tt.want)
			}
		})
	}
}
