package workeragent

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/tlsutil"
	"github.com/blacktree/blacktree/internal/tlsutil/tlstest"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

func TestTLS(t *testing.T) {
	pki := tlstest.Generate(t, t.TempDir())
	other := tlstest.Generate(t, t.TempDir())
	tests := []struct {
		name       string
		clientCA   string // hub requires client certificates from this CA
		ca         string // worker trusts this CA
		cert, key  string // worker's client certificate
		wantRegist bool
	}{
		{name: "trusted hub", ca: pki.CACert, wantRegist: true},
		{name: "untrusted hub", ca: other.CACert, wantRegist: false},
		{name: "mtls with client certificate", clientCA: pki.CACert, ca: pki.CACert, cert: pki.ClientCert, key: pki.ClientKey, wantRegist: true},
		{name: "mtls without client certificate", clientCA: pki.CACert, ca: pki.CACert, wantRegist: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srvTLS, err := tlsutil.ServerConfig(pki.ServerCert, pki.ServerKey, tt.clientCA)
			if err != nil {
				t.Fatalf("ServerConfig() error = %v", err)
			}
			cliTLS, err := tlsutil.ClientConfig(tt.ca, tt.cert, tt.key, "")
			if err != nil {
				t.Fatalf("ClientConfig() error = %v", err)
			}
			hub := fakehub.Start(t, fakehub.Options{TLS: srvTLS, Token: "tls-token"})
			startAgent(t, Config{HubAddrs: []string{hub.Addr}, Token: "tls-token", TLS: cliTLS}, executor.Noop{})
			if tt.wantRegist {
				hub.NextStream(t, wait)
				return
			}
			select {
			case s := <-hub.Streams:
				t.Errorf("worker registered over a TLS setup that must fail: %v", s.Register)
			case <-time.After(500 * time.Millisecond): // a bound on a negative, not a sleep
			}
		})
	}
}

func TestTLSAndInsecureExclusive(t *testing.T) {
	_, err := New(Config{HubAddrs: []string{"h:1"}, TLS: &tls.Config{}, Insecure: true}, executor.Noop{}, nil)
	if err == nil {
		t.Errorf("New(TLS and Insecure) error = nil, want ErrConfig")
	}
}
