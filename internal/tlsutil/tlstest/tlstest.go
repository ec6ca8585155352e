// Package tlstest writes a throw-away certificate authority and
// certificates for tests: a server certificate for 127.0.0.1, ::1 and
// localhost, a worker's client certificate (with the worker role URI SAN)
// signed by the same CA, and a client
// certificate signed by another CA (which the hub must refuse). Keys are
// ECDSA P-256; certificates are valid from an hour ago for a day.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ClientName is the CN (and DNS SAN) of the client certificate Generate
// writes.
const ClientName = "worker-1"

// WorkerRoleURI is tlsutil.WorkerRoleURI (tlsutil's tests import this
// package, so it cannot import tlsutil; TestWorkerRole checks they agree).
const WorkerRoleURI = "blacktree:role:worker"

// ServerName is the DNS name in the server certificate (besides 127.0.0.1
// and ::1).
const ServerName = "localhost"

// Paths are the PEM files Generate wrote.
type Paths struct {
	Dir string

	CACert, CAKey string // the CA the hub trusts for clients and workers trust for the hub

	ServerCert, ServerKey string // for 127.0.0.1, ::1 and localhost

	ClientCert, ClientKey string // CN and DNS SAN ClientName, signed by the CA

	UntrustedCACert string // the other CA: trusts nothing Generate's CA signed

	UntrustedClientCert, UntrustedClientKey string // CN ClientName, signed by the other CA
}

// Generate writes a CA, a server and client certificates into dir.
func Generate(t testing.TB, dir string) Paths {
	t.Helper()
	p := Paths{Dir: dir}
	ca, caKey := newCA(t, "blacktree test CA")
	p.CACert, p.CAKey = writePair(t, dir, "ca", ca, caKey)

	srv := template(t, "blacktree test hub")
	srv.DNSNames = []string{ServerName}
	srv.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	srv.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	p.ServerCert, p.ServerKey = issue(t, dir, "server", srv, ca, caKey)

	p.ClientCert, p.ClientKey = IssueClient(t, p, ClientName)

	other, otherKey := newCA(t, "untrusted test CA")
	p.UntrustedCACert, _ = writePair(t, dir, "untrusted-ca", other, otherKey)
	cli := clientTemplate(t, ClientName)
	p.UntrustedClientCert, p.UntrustedClientKey = issue(t, dir, "untrusted-client", cli, other, otherKey)
	return p
}

// IssueClient writes a worker's client certificate for name (CN and DNS
// SAN, and the worker role URI SAN tlsutil.WorkerRoleURI), signed by p's
// CA, and returns its certificate and key files.
func IssueClient(t testing.TB, p Paths, name string) (certFile, keyFile string) {
	t.Helper()
	ca, caKey := loadCA(t, p)
	return issue(t, p.Dir, "client-"+name, clientTemplate(t, name), ca, caKey)
}

// IssueOperatorClient is IssueClient without the worker role: an
// operator's or btctl's certificate, which is no worker identity.
func IssueOperatorClient(t testing.TB, p Paths, name string) (certFile, keyFile string) {
	t.Helper()
	ca, caKey := loadCA(t, p)
	c := clientTemplate(t, name)
	c.URIs = nil
	return issue(t, p.Dir, "operator-"+name, c, ca, caKey)
}

func clientTemplate(t testing.TB, name string) *x509.Certificate {
	c := template(t, name)
	c.DNSNames = []string{name}
	c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	role, err := url.Parse(WorkerRoleURI)
	if err != nil {
		t.Fatal(err)
	}
	c.URIs = []*url.URL{role}
	return c
}

func template(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"blacktree tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, cn)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func issue(t testing.TB, dir, name string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return writePair(t, dir, name, cert, key)
}

func writePair(t testing.TB, dir, name string, cert *x509.Certificate, key *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", cert.Raw)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func loadCA(t testing.TB, p Paths) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	certPEM, err := os.ReadFile(p.CACert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(p.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		t.Fatalf("tlstest: %s or %s is not PEM", p.CACert, p.CAKey)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("tlstest: CA key is %T, want ECDSA", k)
	}
	return cert, key
}
