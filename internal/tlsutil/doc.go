// Package tlsutil builds the TLS configurations of the hub's gRPC listener
// and of its clients (worker agent, btctl); docs/SECURITY.md.
//
//   - ServerConfig: the hub's certificate, TLS 1.2 minimum. With a client CA
//     the listener is mutual TLS and *requires* a client certificate signed
//     by that CA (tls.RequireAndVerifyClientCert) from every caller —
//     workers and btctl alike. Bearer tokens are still checked on top
//     (internal/auth) unless the hub accepts certificate identities
//     (auth.Config.AllowMTLSIdentity). An operator who passes
//     --tls-client-ca asks for mTLS, so a caller without a certificate is
//     turned away in the handshake, before it can reach any RPC.
//   - ClientConfig: verifies the hub against a CA file (or the system
//     roots), optionally presenting a client certificate.
//   - WorkerRoleURI, HasWorkerRole (role.go): the URI SAN that makes a
//     client certificate a worker's identity (docs/SECURITY.md#identity).
//   - IsLoopback: whether a listen address is loopback-only, for the hub's
//     "listening on a non-loopback address without TLS" warning.
//
// Certificates are read once; rotating them needs a restart (planned: reload
// on SIGHUP).
//
// What a user sees when the two sides disagree (asserted in the tests; all
// are gRPC code Unavailable):
//
//   - plaintext client, TLS hub: `connection error: desc = "error reading
//     server preface: ..."` (the hub answers the HTTP/2 preface with a TLS
//     alert and closes);
//   - TLS client, plaintext hub: `... tls: first record does not look like a
//     TLS handshake`;
//   - hub requires a client certificate, client has none (or one from a CA
//     the hub does not name — Go clients then send none): with TLS 1.3
//     `... remote error: tls: certificate required`, or, when the client was
//     writing as the hub hung up, `broken pipe` / `connection reset by peer`
//     (TLS 1.3 checks the client certificate after the client considers the
//     handshake done); with TLS 1.2 `transport: authentication handshake
//     failed: remote error: tls: handshake failure`;
//   - the hub's certificate is not signed by the client's CA: `...
//     x509: certificate signed by unknown authority`;
//   - wrong hub name: `... x509: certificate is valid for localhost, not
//     <name>`.
//
// Sub-package tlstest generates a throw-away CA and certificates for tests.
package tlsutil
