// Package workeragent is the Blacktree worker agent: it dials out to a hub
// over one long-lived WorkerService.Connect stream, registers, heartbeats,
// runs the jobs the hub sends through an executor.Executor, streams their
// output as JobLog chunks and keeps every result until a hub acknowledges it.
//
// The pieces, one type (Agent) split by concern:
//
//   - config.go: Config, its defaults and validation.
//   - agent.go: New, Run, Shutdown, Drain — the lifecycle.
//   - conn.go: the connection loop (dial, backoff, failover over HubAddrs).
//   - session.go: one stream: Register/Registered, the single sender
//     goroutine and the receive loop.
//   - heartbeat.go: the heartbeat loop and its schedule: the hub's
//     interval, at a phase on the hub's grid kept on the wall clock
//     (internal/hbsched), so that a fleet's heartbeats reach the hub in
//     groups.
//   - jobs.go: RunJob/CancelJob/ResultAck handling and the job runner.
//     Each job runs on a goroutine of its own (Agent.jobsWG), and so does
//     its log pump (owned and waited for by the job's goroutine).
//   - logstream.go: bounded, scrubbed JobLog chunking. A job's first
//     output leaves at once; later output gathers for
//     Config.LogFlushInterval between chunks (sooner when a whole chunk
//     waits), so a chatty build costs one frame per interval, not one per
//     line.
//   - state.go: the state directory (worker id, unacknowledged results).
//   - results.go: when a held result is written there (a late ResultAck,
//     a session's end, Run's return) and how that races with the ack.
//
// Secrets: each job's githubToken is scrubbed (internal/redact, including
// its common encodings) from every JobLog chunk, even when split across
// writes, and from the JobResponse's logs, error and image fields before
// they leave the worker. The worker token is only ever sent as metadata.
//
// Sub-package fakehub is a scriptable WorkerService for tests.
//
// Concurrency: Agent.mu guards the job table, the held results, the draining
// flag and the current session; Agent.filesMu serialises result-file I/O
// (taken before mu, never under it). Each session has exactly one goroutine that
// calls Send on the stream (fed by two bounded channels, control frames
// before log frames) and one that calls Recv.
package workeragent
