package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultMaxFailuresPerMinute is used when Config.MaxFailuresPerMinute is 0.
const DefaultMaxFailuresPerMinute = 30

// Identity kinds.
const (
	KindToken    = "token"    // a worker or admin bearer token
	KindMTLS     = "mtls"     // a verified client certificate
	KindInsecure = "insecure" // no credentials, allowed by InsecureNoAuth
)

// Config configures an Authenticator.
type Config struct {
	// WorkerTokensFile is the --worker-tokens file (format in the package
	// doc). Required unless InsecureNoAuth or AllowMTLSIdentity.
	WorkerTokensFile string
	// AdminTokenFile is the --admin-token-file: one token. Without it the
	// admin API is refused, unless InsecureNoAuth.
	AdminTokenFile string
	// ConsoleTokenFile is the --console-token-file: one token that logs
	// in to the console read-only (console.go). Optional.
	ConsoleTokenFile string
	// InsecureNoAuth lets callers without credentials through
	// (--insecure-no-auth). Presented credentials are still checked.
	InsecureNoAuth bool
	// AllowMTLSIdentity accepts a worker that presents no token but a
	// client certificate the TLS layer verified; its CN (or first DNS SAN)
	// is its name. Needs a listener with a client CA (tlsutil.ServerConfig).
	AllowMTLSIdentity bool
	// MaxFailuresPerMinute bounds failed attempts per peer IP per minute;
	// beyond it the IP's attempts are refused with ResourceExhausted until
	// the minute is over. 0 means DefaultMaxFailuresPerMinute; negative
	// turns the limit off.
	MaxFailuresPerMinute int
}

// Identity is who a call was authenticated as.
type Identity struct {
	// Name is the worker token's name from the file ("" when its line has
	// none: the hub then uses the name the worker registers with), "admin"
	// for the admin token, the certificate's CN / first DNS SAN, or "" for
	// insecure callers.
	Name string
	// Kind is KindToken, KindMTLS or KindInsecure.
	Kind string
	// Fingerprint is redact.Mask of the token, or "sha256:" and 8 hex
	// digits of the certificate's SHA-256; "" for insecure callers.
	Fingerprint string
}

type identityKey struct{}

// WithIdentity returns ctx carrying id (the interceptors do this; tests may
// too).
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFromContext returns the identity the interceptors attached.
func IdentityFromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// tokenSet is one immutable generation of configured tokens.
type tokenSet struct {
	workers []token
	admin   *token // nil: no admin token file
	console *token // nil: no console token file
}

// Authenticator checks callers' credentials. Safe for concurrent use.
type Authenticator struct {
	cfg    Config
	logger hclog.Logger
	now    func() time.Time // replaced in tests

	tokens atomic.Pointer[tokenSet]

	reloadMu sync.Mutex // serialises Reload

	limiter *limiter
}

// New loads the token files and returns an Authenticator. It fails when no
// way to authenticate workers is configured and InsecureNoAuth is not set,
// or when a token file is unreadable or malformed.
func New(cfg Config, logger hclog.Logger) (*Authenticator, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if cfg.WorkerTokensFile == "" && !cfg.InsecureNoAuth && !cfg.AllowMTLSIdentity {
		return nil, errors.New("no worker tokens configured: pass --worker-tokens FILE or --insecure-no-auth")
	}
	limit := cfg.MaxFailuresPerMinute
	if limit == 0 {
		limit = DefaultMaxFailuresPerMinute
	}
	a := &Authenticator{cfg: cfg, logger: logger, now: time.Now}
	a.limiter = newLimiter(limit, time.Minute, func() time.Time { return a.now() })
	set, err := a.load()
	if err != nil {
		return nil, err
	}
	a.tokens.Store(set)
	if cfg.InsecureNoAuth {
		logger.Warn("insecure: --insecure-no-auth is set, callers without credentials are accepted on the worker and admin APIs")
	}
	if set.admin == nil && !cfg.InsecureNoAuth {
		logger.Info("no admin token file: the admin API is refused")
	}
	logger.Debug("tokens loaded", "worker_tokens", len(set.workers), "admin_token", set.admin != nil)
	return a, nil
}

// load reads the configured files into a new tokenSet.
func (a *Authenticator) load() (*tokenSet, error) {
	set := &tokenSet{}
	if p := a.cfg.WorkerTokensFile; p != "" {
		ws, err := loadTokens(p)
		if err != nil {
			return nil, err
		}
		a.warnPermissions(p)
		set.workers = ws
	}
	if p := a.cfg.AdminTokenFile; p != "" {
		as, err := loadTokens(p)
		if err != nil {
			return nil, err
		}
		if len(as) != 1 {
			return nil, &FileError{
				Path: p,
				Line: as[1].line,
				Err:  errors.New("admin token file must hold exactly one token"),
			}
		}
		a.warnPermissions(p)
		admin := as[0]
		admin.name = "admin"
		for _, w := range set.workers {
			if admin.digest == w.digest {
				return nil, &FileError{
					Path: p,
					Line: admin.line,
					Err:  fmt.Errorf("admin token is also a worker token (%s line %d)", a.cfg.WorkerTokensFile, w.line),
				}
			}
		}
		set.admin = &admin
	}
	if p := a.cfg.ConsoleTokenFile; p != "" {
		cs, err := loadTokens(p)
		if err != nil {
			return nil, err
		}
		if len(cs) != 1 {
			return nil, &FileError{Path: p, Line: cs[1].line, Err: errors.New("console token file must hold exactly one token")}
		}
		a.warnPermissions(p)
		if set.admin != nil && cs[0].digest == set.admin.digest {
			return nil, &FileError{Path: p, Line: cs[0].line, Err: errors.New("console token is the admin token: it would log in read-only")}
		}
		for _, w := range set.workers {
			if cs[0].digest == w.digest {
				return nil, &FileError{Path: p, Line: cs[0].line, Err: fmt.Errorf("console token is also a worker token (%s line %d)", a.cfg.WorkerTokensFile, w.line)}
			}
		}
		set.console = &cs[0]
	}
	return set, nil
}

// warnPermissions logs when a token file is readable by other users.
func (a *Authenticator) warnPermissions(path string) {
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o004 != 0 {
		a.logger.Warn("token file is world-readable; chmod 600 it", "path", path, "mode", st.Mode().Perm().String())
	}
}

// StillAuthorized reports whether the worker credentials a call carried
// (the bearer token in ctx's incoming metadata, or its client certificate)
// would be accepted by the current token set. After Reload the hub asks it
// of every open session, to close those whose token was revoked. It has no
// side effects (no failure is logged or counted).
func (a *Authenticator) StillAuthorized(ctx context.Context) bool {
	_, _, failure := a.check(ctx, policyWorker)
	return failure == ""
}

// Reload re-reads the token files. Calls already authenticated (connected
// streams) are not affected; new calls see the new tokens. On error the
// previous tokens stay in force and the error says what is wrong.
func (a *Authenticator) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	set, err := a.load()
	if err != nil {
		return fmt.Errorf("reload tokens (keeping the previous ones): %w", err)
	}
	old := a.tokens.Swap(set)
	a.logger.Info("tokens reloaded", "worker_tokens", len(set.workers), "was", len(old.workers), "admin_token", set.admin != nil)
	return nil
}

// matchWorker returns the worker token equal to secret. It compares
// SHA-256 digests in constant time against every configured token.
func matchWorker(set *tokenSet, secret string) (token, bool) {
	d := sha256.Sum256([]byte(secret))
	var (
		found token
		ok    int
	)
	for _, t := range set.workers {
		eq := subtle.ConstantTimeCompare(d[:], t.digest[:])
		if eq == 1 {
			found = t
		}
		ok |= eq
	}
	return found, ok == 1
}

// matchAdmin reports whether secret is the admin token, in constant time.
func matchAdmin(set *tokenSet, secret string) bool {
	if set.admin == nil {
		return false
	}
	d := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(d[:], set.admin.digest[:]) == 1
}
