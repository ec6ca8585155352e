package docker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// openGitServer is git smart HTTP on loopback that asks for no
// credentials and records every Authorization header it receives.
type openGitServer struct {
	*gitServer // root and addRepo only; its url is this server's

	mu       sync.Mutex // guards the following
	requests int
	conns    int
	authSeen []string
}

func newOpenGitServer(t *testing.T, useTLS bool) *openGitServer {
	t.Helper()
	o := &openGitServer{gitServer: &gitServer{root: t.TempDir()}}
	backend := &cgi.Handler{
		Path: gitHTTPBackend,
		Env:  []string{"GIT_PROJECT_ROOT=" + o.root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.requests++
		if a := r.Header.Get("Authorization"); a != "" {
			o.authSeen = append(o.authSeen, a)
		}
		o.mu.Unlock()
		backend.ServeHTTP(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.mu.Lock()
			o.conns++
			o.mu.Unlock()
		}
	}
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	o.srv, o.url = srv, srv.URL
	return o
}

// seen returns the connections and requests the server got, and the
// Authorization headers among them.
func (o *openGitServer) seen() (conns, requests int, auth []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conns, o.requests, append([]string(nil), o.authSeen...)
}

// newRedirector answers every request with a redirect to target plus the
// request's path and query, and counts them.
func newRedirector(t *testing.T, target string) (url string, count func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

var simpleRepo = repoFiles{files: map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"}}

// assertRefusedAtClone checks a failed status at CLONE whose error
// contains want and nowhere carries the token.
func assertRefusedAtClone(t *testing.T, resp *blacktreev1.JobResponse, logs *logSink, want string) {
	t.Helper()
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_CLONE {
		t.Fatalf("Run() = success %v stage %v error %q, want failure at CLONE", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
	if !strings.HasPrefix(resp.GetError(), "clone: ") || !strings.Contains(resp.GetError(), want) {
		t.Errorf("Run().Error = %q, want clone: ...%s...", resp.GetError(), want)
	}
	js, err := protojson.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"json": string(js), "streamed logs": logs.String()} {
		if strings.Contains(s, goodToken) {
			t.Errorf("token appears in %s: %s", what, s)
		}
	}
}

// An allowed git host (the base URL) that redirects elsewhere: the
// redirect target is checked by name, then by address at connect time.
func TestCloneRedirectToPrivateRefused(t *testing.T) {
	target := newOpenGitServer(t, false)
	target.addRepo(t, "acme/app", simpleRepo)
	_, targetPort, err := net.SplitHostPort(strings.TrimPrefix(target.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, target string
		testHosts    map[string]string
		want         string
	}{
		{
			name:   "private literal",
			target: target.url,
			want:   "acme/app: redirect to 127.0.0.1 refused: a loopback, private, link-local or metadata address",
		},
		{
			name:      "name resolving to loopback",
			target:    "http://git.test:" + targetPort,
			testHosts: map[string]string{"git.test": "127.0.0.1"},
			want:      "acme/app: connection to git.test (127.0.0.1:" + targetPort + ") refused: a loopback, private, link-local or metadata address",
		},
		{
			name:      "name resolving to metadata",
			target:    "http://git.test:" + targetPort,
			testHosts: map[string]string{"git.test": "169.254.169.254"},
			want:      "acme/app: connection to git.test (169.254.169.254:" + targetPort + ") refused: a loopback, private, link-local or metadata address",
		},
		{
			name:   "host not allowed",
			target: "http://elsewhere.test:" + targetPort,
			want:   "acme/app: redirect to elsewhere.test refused: not an allowed git host",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			redirector, redirects := newRedirector(t, tc.target)
			e := newEnv(t, func(c *Config) {
				c.GitBaseURL = redirector
				c.AllowedGitHosts = []string{"127.0.0.1:" + targetPort, "git.test:" + targetPort}
			})
			e.exec.egress.testHosts = tc.testHosts
			logs := newLogSink("")
			resp := e.exec.Run(context.Background(), request("job-redirect", "acme/app"), logs)
			assertRefusedAtClone(t, resp, logs, tc.want)
			if redirects() == 0 {
				t.Errorf("the redirector got no request: the test did not exercise a redirect")
			}
			if conns, requests, _ := target.seen(); conns != 0 || requests != 0 {
				t.Errorf("redirect target got %d connections, %d requests, want none", conns, requests)
			}
		})
	}
}

// With --allow-private-git-hosts, a redirect to another allowed host is
// followed, but the token stays with the origin: the target (another
// port, so another origin) never receives an Authorization header.
func TestCloneRedirectDropsToken(t *testing.T) {
	target := newOpenGitServer(t, false)
	target.addRepo(t, "acme/app", simpleRepo)
	redirector, redirects := newRedirector(t, target.url)
	e := newEnv(t, func(c *Config) {
		c.GitBaseURL = redirector
		c.AllowedGitHosts = []string{strings.TrimPrefix(target.url, "http://")}
		c.AllowPrivateGitHosts = true
	})
	logs := newLogSink("")
	resp := e.exec.Run(context.Background(), request("job-redirect-ok", "acme/app"), logs)
	if !resp.GetSuccess() {
		t.Fatalf("Run() failed: stage %v error %q\n%s", resp.GetFailedStage(), resp.GetError(), resp.GetLogs())
	}
	_, requests, auth := target.seen()
	if redirects() == 0 || requests == 0 {
		t.Fatalf("redirector got %d requests, target %d: the clone did not follow a redirect", redirects(), requests)
	}
	if len(auth) > 0 {
		t.Errorf("redirect target received %d Authorization headers, want none (the token must not follow a redirect to another host)", len(auth))
	}
}

// A full https repoUrl on an allowed host whose name resolves to a
// private address is refused at connect time, before any byte reaches
// it; --allow-private-git-hosts lets the same clone through.
func TestCloneHostResolvingToPrivateRefused(t *testing.T) {
	for _, allowPrivate := range []bool{false, true} {
		name := map[bool]string{false: "refused", true: "allowed with AllowPrivateGitHosts"}[allowPrivate]
		t.Run(name, func(t *testing.T) {
			srv := newOpenGitServer(t, true)
			srv.addRepo(t, "acme/app", simpleRepo)
			_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.url, "https://"))
			if err != nil {
				t.Fatal(err)
			}
			// httptest's certificate names example.com; the test resolves it
			// to the server's loopback address.
			host := "example.com:" + port
			e := newEnv(t, func(c *Config) {
				c.AllowedGitHosts = []string{host}
				c.AllowPrivateGitHosts = allowPrivate
			})
			e.exec.egress.testHosts = map[string]string{"example.com": "127.0.0.1"}
			roots := x509.NewCertPool()
			roots.AddCert(srv.srv.Certificate())
			e.exec.egress.transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

			logs := newLogSink("")
			resp := e.exec.Run(context.Background(), request("job-resolve", "https://"+host+"/acme/app.git"), logs)
			conns, _, auth := srv.seen()
			if allowPrivate {
				if !resp.GetSuccess() {
					t.Fatalf("Run() failed: stage %v error %q\n%s", resp.GetFailedStage(), resp.GetError(), resp.GetLogs())
				}
				if len(auth) == 0 {
					t.Errorf("the git server got no Authorization header: the token did not reach the repository's own host")
				}
				return
			}
			assertRefusedAtClone(t, resp, logs, "connection to example.com (127.0.0.1:"+port+") refused: a loopback, private, link-local or metadata address")
			if conns != 0 {
				t.Errorf("the private address got %d connections, want none", conns)
			}
		})
	}
}

func TestGitEgressPolicy(t *testing.T) {
	e, err := New(Config{
		GitBaseURL:      "https://Git.Example.com/base",
		AllowedGitHosts: []string{"code.example.org", "10.0.0.5"},
		AllowAnyPush:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for addr, want := range map[string]bool{
		"git.example.com:443":  true, // the base URL's default port
		"git.example.com:8443": false,
		"code.example.org:443": false, // allowed, but address-checked
		"127.0.0.1:443":        false,
	} {
		if got := e.egress.exempt(addr); got != want {
			t.Errorf("exempt(%q) = %v, want %v", addr, got, want)
		}
	}
	for target, want := range map[string]string{ // want "" means followed
		"https://git.example.com/acme/app.git/info/refs":       "",
		"https://code.example.org/acme/app.git/info/refs":      "",
		"https://evil.example.net/acme/app.git/info/refs":      "redirect to evil.example.net refused: not an allowed git host",
		"https://10.0.0.5/acme/app.git/info/refs":              "redirect to 10.0.0.5 refused: " + privateReason,
		"https://code.example.org:8443/acme/app.git/info/refs": "", // the host is listed without a port
	} {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if err := e.egress.checkRedirect(req); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("checkRedirect(%s) = %q, want %q", target, got, want)
		}
	}
}
