// Package auth authenticates the hub's gRPC callers (docs/SECURITY.md).
//
// Workers call /blacktree.v1.WorkerService/ with metadata
// `authorization: Bearer <worker token>`; the tokens come from the hub's
// --worker-tokens file. Operators call /blacktree.v1.AdminService/ with the
// admin token from --admin-token-file. The two sets are separate: a worker
// token never opens the admin API and the admin token never opens Connect.
// With Config.AllowMTLSIdentity a worker may instead present a client
// certificate that the TLS layer verified (see internal/tlsutil) and that
// carries the worker role (the URI SAN tlsutil.WorkerRoleURI); its Common
// Name (or first DNS SAN) names it. A certificate without the role (an
// operator's) is no worker identity. grpc.health.v1 is open. Any other
// method, server reflection included, needs the admin token.
//
// The hub's console (console.go) logs in with the admin token (view and
// act) or the --console-token-file token (view only), typed into its
// login form: ConsoleLogin checks it under the same per-IP failure limit,
// and ConsoleRole re-checks a session's token digest on every request, so
// Reload ends the sessions of a rotated token.
//
// TapHandle (tap.go) checks a call's headers before grpc-go reads any of
// its messages (grpc.InTapHandle); the interceptors do the same check for
// servers wired without it, and skip calls TapHandle already
// authenticated.
//
// Token comparison is constant time: the presented token and every
// configured token are hashed with SHA-256 and compared with
// crypto/subtle, always against every token, so neither a token's length
// nor its position in the file leaks. Tokens never appear in logs or
// errors; redact.Mask fingerprints ("sha256:ab12cd34") stand in for them.
//
// Failed attempts are counted per peer IP; past Config.MaxFailuresPerMinute
// further attempts from that IP are refused with codes.ResourceExhausted,
// before any token is compared, until the minute is over.
//
// Reload re-reads the token files (the hub calls it on SIGHUP). A revoked
// token is refused from the next call on; StillAuthorized re-checks an
// open stream's credentials, which the hub uses after a reload to close
// the sessions of revoked tokens. A file that fails to parse leaves the
// previous tokens in force.
//
// # Token file format
//
// One token per line, optionally `name:token` (the name becomes
// Identity.Name, which the hub uses as the worker's name; without one the
// worker's self-chosen name is used and logs show the token's fingerprint).
// Leading and trailing white space is trimmed; blank lines and lines
// starting with `#` are ignored. A name is 1–64 characters of
// [A-Za-z0-9._-]; the token is everything after the first colon. Tokens are
// at least MinTokenLen (16) characters, printable ASCII without spaces.
// A duplicate token or name is an error naming the line numbers, never the
// token. The admin token file holds exactly one token (same rules; a
// name is allowed and ignored); it may not equal any worker token.
//
// Generate a token with e.g. `openssl rand -hex 32`.
//
// # --insecure-no-auth
//
// Config.InsecureNoAuth lets callers that present no credentials through,
// as Identity{Kind: "insecure"}, on the worker and the admin API alike.
// Credentials that are presented are still checked against the tokens
// that are configured: a wrong token is refused even then, so a
// misconfigured worker finds out. (With no tokens of that kind configured,
// a presented token is ignored.)
package auth
