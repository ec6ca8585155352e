package tlsutil

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/blacktree/blacktree/internal/tlsutil/tlstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs a gRPC health server on loopback, with TLS when cfg is not
// nil, and returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	var opts []grpc.ServerOption
	if cfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	srv := grpc.NewServer(opts...)
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
	return lis.Addr().String()
}

// check calls Health.Check on target with the given transport credentials
// and returns the call's error and the peer's TLS state (if any).
func check(t *testing.T, target string, creds credentials.TransportCredentials) (*tls.ConnectionState, error) {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		return &info.State, err
	}
	return nil, err
}

func mustServer(t *testing.T, certFile, keyFile, ca string) *tls.Config {
	t.Helper()
	cfg, err := ServerConfig(certFile, keyFile, ca)
	if err != nil {
		t.Fatalf("ServerConfig() error = %v", err)
	}
	return cfg
}

func mustClient(t *testing.T, ca, certFile, keyFile, serverName string) credentials.TransportCredentials {
	t.Helper()
	cfg, err := ClientConfig(ca, certFile, keyFile, serverName)
	if err != nil {
		t.Fatalf("ClientConfig() error = %v", err)
	}
	return credentials.NewTLS(cfg)
}

func TestHandshakes(t *testing.T) {
	p := tlstest.Generate(t, t.TempDir())
	tlsAddr := serve(t, mustServer(t, p.ServerCert, p.ServerKey, ""))
	mtlsAddr := serve(t, mustServer(t, p.ServerCert, p.ServerKey, p.CACert))
	plainAddr := serve(t, nil)
	_, port, _ := net.SplitHostPort(tlsAddr)
	// A client asking for TLS 1.2 only gets the refusal deterministically
	// in the handshake.
	tls12Client := func(certFile, keyFile string) credentials.TransportCredentials {
		cfg, err := ClientConfig(p.CACert, certFile, keyFile, "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxVersion = tls.VersionTLS12
		return credentials.NewTLS(cfg)
	}

	tests := []struct {
		name     string
		target   string
		creds    credentials.TransportCredentials
		wantCode codes.Code
		wantMsg  string // substring of the status message the user sees; alternatives split by |
		wantPeer bool   // the server saw a verified client certificate
	}{
		{
			name:   "tls by ip",
			target: tlsAddr,
			creds:  mustClient(t, p.CACert, "", "", ""),
		},
		{
			name:   "tls by name",
			target: "localhost:" + port,
			creds:  mustClient(t, p.CACert, "", "", ""),
		},
		{
			name:   "tls client cert offered to plain tls",
			target: tlsAddr,
			creds:  mustClient(t, p.CACert, p.ClientCert, p.ClientKey, ""),
		},
		{
			name:     "mtls",
			target:   mtlsAddr,
			creds:    mustClient(t, p.CACert, p.ClientCert, p.ClientKey, ""),
			wantPeer: true,
		},
		{
			name:     "mtls without client cert",
			target:   mtlsAddr,
			creds:    mustClient(t, p.CACert, "", "", ""),
			wantCode: codes.Unavailable,
			wantMsg:  tls13Refusal("certificate required"),
		},
		{
			name:     "mtls untrusted client cert",
			target:   mtlsAddr,
			creds:    mustClient(t, p.CACert, p.UntrustedClientCert, p.UntrustedClientKey, ""),
			wantCode: codes.Unavailable,
			wantMsg:  tls13Refusal("certificate required"),
		}, // Go's client offers no certificate the hub's CA list does not name
		{
			name:     "mtls tls1.2 without client cert",
			target:   mtlsAddr,
			creds:    tls12Client("", ""),
			wantCode: codes.Unavailable,
			wantMsg:  "authentication handshake failed: remote error: tls: handshake failure",
		},
		{
			name:     "mtls tls1.2 untrusted client cert",
			target:   mtlsAddr,
			creds:    tls12Client(p.UntrustedClientCert, p.UntrustedClientKey),
			wantCode: codes.Unavailable,
			wantMsg:  "authentication handshake failed: remote error: tls: handshake failure",
		},
		{
			name:     "hub not trusted",
			target:   tlsAddr,
			creds:    mustClient(t, p.UntrustedCACert, "", "", ""),
			wantCode: codes.Unavailable,
			wantMsg:  "x509: certificate signed by unknown authority",
		},
		{
			name:     "wrong server name",
			target:   tlsAddr,
			creds:    mustClient(t, p.CACert, "", "", "hub.example.com"),
			wantCode: codes.Unavailable,
			wantMsg:  "x509: certificate is valid for localhost, not hub.example.com",
		},
		{
			name:     "plaintext client tls hub",
			target:   tlsAddr,
			creds:    insecure.NewCredentials(),
			wantCode: codes.Unavailable,
			wantMsg:  "error reading server preface",
		},
		{
			name:     "tls client plaintext hub",
			target:   plainAddr,
			creds:    mustClient(t, p.CACert, "", "", ""),
			wantCode: codes.Unavailable,
			wantMsg:  "tls: first record does not look like a TLS handshake",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, err := check(t, tt.target, tt.creds)
			st := status.Convert(err)
			if st.Code() != tt.wantCode || !containsAny(st.Message(), tt.wantMsg) {
				t.Fatalf("Check() = %v, want code %v with %q", err, tt.wantCode, tt.wantMsg)
			}
			if err != nil {
				return
			}
			if state == nil || state.Version < tls.VersionTLS12 {
				t.Fatalf("peer TLS state = %+v, want TLS 1.2+", state)
			}
		})
	}
}

// tls13Refusal lists what a client sees when the hub refuses its
// certificate. In TLS 1.3 the client's side of the handshake is done before
// the server checks the client certificate, so the client learns of the
// refusal only on its next read or write: the alert (alert), or, if it was
// writing when the server closed, a broken pipe / reset.
func tls13Refusal(alert string) string {
	return alert + "|broken pipe|connection reset by peer|EOF"
}

func containsAny(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

func TestServerSeesClientIdentity(t *testing.T) {
	p := tlstest.Generate(t, t.TempDir())
	gotCN := make(chan string, 1)
	cfg := mustServer(t, p.ServerCert, p.ServerKey, p.CACert)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) > 0 {
			select {
			case gotCN <- cs.VerifiedChains[0][0].Subject.CommonName:
			default:
			}
		}
		return nil
	}
	addr := serve(t, cfg)
	if _, err := check(t, addr, mustClient(t, p.CACert, p.ClientCert, p.ClientKey, "")); err != nil {
		t.Fatalf("Check() = %v", err)
	}
	select {
	case cn := <-gotCN:
		if cn != tlstest.ClientName {
			t.Errorf("client CN = %q, want %q", cn, tlstest.ClientName)
		}
	default:
		t.Errorf("server saw no verified client chain")
	}
	other, otherKey := tlstest.IssueClient(t, p, "worker-2")
	if _, err := check(t, addr, mustClient(t, p.CACert, other, otherKey, "")); err != nil {
		t.Errorf("Check(IssueClient cert) = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	p := tlstest.Generate(t, t.TempDir())
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name    string
		build   func() (*tls.Config, error)
		wantErr string
	}{
		{
			name:  "server ok",
			build: func() (*tls.Config, error) { return ServerConfig(p.ServerCert, p.ServerKey, "") },
		},
		{
			name:    "server no key",
			build:   func() (*tls.Config, error) { return ServerConfig(p.ServerCert, "", "") },
			wantErr: "both a certificate (--tls-cert) and a key (--tls-key) are needed",
		},
		{
			name:    "server missing cert",
			build:   func() (*tls.Config, error) { return ServerConfig(missing, p.ServerKey, "") },
			wantErr: "tls: load certificate " + missing,
		},
		{
			name:    "server key mismatch",
			build:   func() (*tls.Config, error) { return ServerConfig(p.ServerCert, p.ClientKey, "") },
			wantErr: "private key does not match public key",
		},
		{
			name:    "server junk CA",
			build:   func() (*tls.Config, error) { return ServerConfig(p.ServerCert, p.ServerKey, junk) },
			wantErr: "holds no PEM certificate",
		},
		{
			name:    "server missing CA",
			build:   func() (*tls.Config, error) { return ServerConfig(p.ServerCert, p.ServerKey, missing) },
			wantErr: "tls: read CA file",
		},
		{
			name:  "client ok system roots",
			build: func() (*tls.Config, error) { return ClientConfig("", "", "", "") },
		},
		{
			name:    "client cert without key",
			build:   func() (*tls.Config, error) { return ClientConfig(p.CACert, p.ClientCert, "", "") },
			wantErr: "pass both or neither",
		},
		{
			name:    "client junk CA",
			build:   func() (*tls.Config, error) { return ClientConfig(junk, "", "", "") },
			wantErr: "holds no PEM certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.build()
			if tt.wantErr == "" {
				if err != nil || cfg == nil || cfg.MinVersion != tls.VersionTLS12 {
					t.Fatalf("config = %v, %v, want a TLS 1.2+ config", cfg, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	cfg := mustServer(t, p.ServerCert, p.ServerKey, p.CACert)
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ServerConfig(with CA).ClientAuth = %v, want RequireAndVerifyClientCert", cfg.ClientAuth)
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		name string
		addr string
		want bool
	}{
		{name: "all interfaces", addr: ":7070", want: false},
		{name: "ipv4 any", addr: "0.0.0.0:7070", want: false},
		{name: "ipv6 any", addr: "[::]:7070", want: false},
		{name: "ipv4 loopback", addr: "127.0.0.1:7070", want: true},
		{name: "ipv4 loopback range", addr: "127.1.2.3:7070", want: true},
		{name: "ipv6 loopback", addr: "[::1]:7070", want: true},
		{name: "localhost", addr: "localhost:7070", want: true},
		{name: "LOCALHOST", addr: "LOCALHOST:7070", want: true},
		{name: "dot localhost", addr: "hub.localhost:7070", want: true},
		{name: "no port", addr: "127.0.0.1", want: true},
		{name: "bracketed no port", addr: "[::1]", want: true},
		{name: "public ip", addr: "10.0.0.5:7070", want: false},
		{name: "name", addr: "hub.example.com:7070", want: false},
		{name: "unix socket", addr: "unix:/run/blacktree.sock", want: true},
		{name: "empty", addr: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsLoopback(tt.addr); got != tt.want {
				t.Errorf("IsLoopback(%q) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}
