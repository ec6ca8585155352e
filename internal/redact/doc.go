// Package redact is Blacktree's one secret-scrubbing mechanism
// (docs/SECURITY.md, "Redaction"): every path where text leaves a process — build output streamed to the
// hub, JobResponse logs and errors, log lines — passes through a *Secrets.
//
// A Secrets holds secret strings (a job's GitHub token, registry
// passwords). Scrub replaces each secret, and the encodings it commonly
// shows up in (Encodings: URL escaping with upper- and lowercase hex, hex,
// JSON escapes, base64 at any byte offset, which covers base64 of
// "user:<secret>"), with Placeholder.
//
// Strings shorter than MinLen bytes are ignored by New and Add: replacing
// every "abc" in a build log would wreck the log and protect nothing.
//
// Overlapping or adjacent matches become one Placeholder, so no part of any
// secret survives next to another.
//
// Writer / Stream wrap an io.Writer with a streaming scrubber that catches a
// secret split across Write calls: it holds back the longest tail of the
// data that could still become a secret (at most the longest pattern's
// length minus one) until more data arrives or Flush / Close is called.
//
// Mask gives a short fingerprint of a token ("sha256:ab12cd34") that is safe
// to log and lets an operator tell tokens apart.
//
// A nil *Secrets is valid and scrubs nothing. All methods are safe for
// concurrent use.
package redact
