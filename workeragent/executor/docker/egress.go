package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/blacktree/blacktree/internal/jobspec"
)

// errGitEgress is the cause of a clone refused for where it leads: a
// redirect to a host the policy does not allow, or a connection to a
// loopback, private, link-local or metadata address. Errors carrying it
// are *egressError values naming the host.
var errGitEgress = errors.New("refused by the git host policy")

// egressError names what a clone tried to reach and why it was refused.
// It never holds the token: it is built from URLs and addresses only.
type egressError struct{ target, reason string }

func (e *egressError) Error() string { return e.target + " refused: " + e.reason }
func (e *egressError) Unwrap() error { return errGitEgress }

const privateReason = "a loopback, private, link-local or metadata address"

// gitEgress decides where one executor's clones may connect. The literal
// repoUrl host is checked before the clone (resolveRepo); this checks
// what the clone leads to: redirect targets (checkRedirect) and, at
// connect time, the address a name resolved to (dial), so a name that
// resolves or rebinds to a private address is refused too.
//
// Connections to the GitBaseURL's host:port, and to a proxy taken from
// the environment, are not checked: both are the operator's choice. With
// AllowPrivateGitHosts, no address is checked (redirects still must stay
// on allowed hosts).
type gitEgress struct {
	policy       jobspec.Policy
	allowPrivate bool
	baseHostPort string            // GitBaseURL's host:port, lower case
	transport    *http.Transport   // this executor's git connections
	testHosts    map[string]string // host name → IP answered instead of DNS; set by tests only

	mu      sync.Mutex      // guards proxies
	proxies map[string]bool // host:port of proxies the environment named
}

func newGitEgress(base *url.URL, policy jobspec.Policy, allowPrivate bool) *gitEgress {
	g := &gitEgress{
		policy:       policy,
		allowPrivate: allowPrivate,
		baseHostPort: hostPort(base),
		proxies:      make(map[string]bool),
	}
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	checked := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, ControlContext: refusePrivate}
	g.transport = http.DefaultTransport.(*http.Transport).Clone()
	g.transport.Proxy = g.proxy
	g.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		dialer := checked
		if g.exempt(addr) {
			dialer = plain
		}
		if ip, ok := g.testHosts[strings.ToLower(host)]; ok {
			addr = net.JoinHostPort(ip, port)
		}
		conn, err := dialer.DialContext(ctx, network, addr)
		var ee *egressError
		if errors.As(err, &ee) {
			return nil, &egressError{target: fmt.Sprintf("connection to %s (%s)", host, ee.target), reason: ee.reason}
		}
		return conn, err
	}
	return g
}

// refusePrivate is the checked dialer's Control hook: it runs for each
// address the dialer tries, after name resolution and just before the
// connect, so the address checked is the address connected to.
func refusePrivate(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || jobspec.IsPrivateAddr(ap.Addr()) {
		return &egressError{target: address, reason: privateReason}
	}
	return nil
}

// exempt reports whether a dial to addr (host:port) skips the address
// check.
func (g *gitEgress) exempt(addr string) bool {
	addr = strings.ToLower(addr)
	if g.allowPrivate || addr == g.baseHostPort {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.proxies[addr]
}

// proxy is the transport's Proxy: the environment's choice, whose
// address is then exempt from the address check (the proxy resolves the
// git host itself, so only the redirect check applies behind it).
func (g *gitEgress) proxy(req *http.Request) (*url.URL, error) {
	u, err := http.ProxyFromEnvironment(req)
	if u != nil {
		g.mu.Lock()
		g.proxies[hostPort(u)] = true
		g.mu.Unlock()
	}
	return u, err
}

// checkRedirect refuses a redirect to a host the policy does not allow,
// and, unless private hosts are allowed, to a private host literal. go-git
// runs it after its own checks (scheme downgrade, initial request only)
// and strips the credentials from any hop that leaves the origin.
func (g *gitEgress) checkRedirect(req *http.Request) error {
	host := strings.ToLower(req.URL.Hostname())
	switch {
	case hostPort(req.URL) == g.baseHostPort:
		return nil
	case !g.policy.AllowsHost(strings.ToLower(req.URL.Host), host):
		return &egressError{target: "redirect to " + host, reason: "not an allowed git host"}
	case jobspec.IsPrivateHost(host) && !g.allowPrivate:
		return &egressError{target: "redirect to " + host, reason: privateReason}
	}
	return nil
}

// hostPort is u's host:port in lower case, with the scheme's default port
// when u names none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
		if strings.EqualFold(u.Scheme, "http") {
			port = "80"
		}
	}
	return strings.ToLower(net.JoinHostPort(u.Hostname(), port))
}
