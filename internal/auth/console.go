package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"

	"github.com/blacktree/blacktree/internal/redact"
)

// Console roles: what a console session may do. The admin token logs in
// as ConsoleAdmin (view, drain, cancel); Config.ConsoleTokenFile's token
// as ConsoleViewer (view only).
const (
	ConsoleAdmin  = "admin"
	ConsoleViewer = "viewer"
)

// Errors of ConsoleLogin.
var (
	// ErrConsoleDenied: the token is neither the admin nor the console
	// token.
	ErrConsoleDenied = errors.New("wrong token")
	// ErrConsoleLimited: the peer failed too often this minute (the same
	// per-IP limit as the gRPC API's).
	ErrConsoleLimited = errors.New(msgRateLimited)
)

// ConsoleDigest identifies the token a console session logged in with:
// its SHA-256. A session stays valid only while its digest is still the
// admin or console token's (ConsoleRole), so a rotated token ends it.
type ConsoleDigest [sha256.Size]byte

// ConsoleEnabled reports whether any token can log in to the console.
func (a *Authenticator) ConsoleEnabled() bool {
	set := a.tokens.Load()
	return set.admin != nil || set.console != nil
}

// ConsoleLogin checks a token typed into the console's login form from
// ip. Failures count against ip like the gRPC API's, and are logged with
// the token's fingerprint only.
func (a *Authenticator) ConsoleLogin(ip, secret string) (role string, digest ConsoleDigest, err error) {
	if a.limiter.limited(ip) {
		a.logger.Debug("console login refused: rate limited", "peer", ip)
		return "", digest, ErrConsoleLimited
	}
	digest = sha256.Sum256([]byte(secret))
	if role = a.ConsoleRole(digest); role == "" {
		limited := a.limiter.fail(ip)
		a.logger.Warn("console login failed", "peer", ip, "token", redact.Mask(secret), "rate_limited", limited)
		return "", ConsoleDigest{}, ErrConsoleDenied
	}
	a.logger.Info("console login", "peer", ip, "role", role)
	return role, digest, nil
}

// ConsoleRole returns the role of the token whose digest is d under the
// current tokens, or "" when it is neither (never was, or was rotated
// away by Reload). Constant time in d.
func (a *Authenticator) ConsoleRole(d ConsoleDigest) string {
	set := a.tokens.Load()
	isAdmin := set.admin != nil && subtle.ConstantTimeCompare(d[:], set.admin.digest[:]) == 1
	isViewer := set.console != nil && subtle.ConstantTimeCompare(d[:], set.console.digest[:]) == 1
	switch {
	case isAdmin:
		return ConsoleAdmin
	case isViewer:
		return ConsoleViewer
	default:
		return ""
	}
}
