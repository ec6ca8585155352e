// Package backoff is the jittered exponential backoff of Blacktree's
// reconnect loops: the RabbitMQ adapter's redials and a worker's hub
// sessions.
//
// Attempt n waits a random duration in [d/2, d], where d = min·2ⁿ capped
// at max ("equal jitter"), so that peers that lost the same server
// together do not come back in lockstep. A Backoff is not safe for
// concurrent use; each reconnect loop owns one. No goroutines, no locks.
//
// Files: backoff.go.
package backoff
