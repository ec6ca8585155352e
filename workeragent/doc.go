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
//     goroutine and the receive loop. handshake.go: the protocol version
//     and features Register carries, and ErrProtocolRefused, on which the
//     connection loop waits its longest backoff.
//   - heartbeat.go: the heartbeat loop and its schedule: the hub's
//     interval, at a phase on the hub's grid kept on the wall clock
//     (internal/hbsched), so that a fleet's heartbeats reach the hub in
//     groups.
//   - jobs.go: RunJob/ResultAck handling and the job runner.
//   - cancel.go: CancelJob: the job's context cancelled with an
//     executor.CancelError, then Config.CancelGrace (one time.AfterFunc
//     per cancelled job) before the job is reported cancelled without
//     waiting for its executor; the executor runs on a goroutine of its
//     own (in jobsWG) so that it can be abandoned. A push is never
//     abandoned. job.cancelMu is a leaf.
//     Each job runs on a goroutine of its own (Agent.jobsWG), and so does
//     its log pump (owned and waited for by the job's goroutine).
//   - progress.go: JobProgress, the stage each running job enters, offered
//     without waiting to the current session's control queue when its hub
//     announced job-progress, and every running job's stage again after
//     each Registered.
//   - logstream.go: bounded, scrubbed JobLog chunking. A job's first
//     output leaves at once; later output gathers for
//     Config.LogFlushInterval between chunks (sooner when a whole chunk
//     waits), so a chatty build costs one frame per interval, not one per
//     line.
//   - state.go: the state directory (worker id, unacknowledged results).
//   - journal.go: the job journal (docs/design/worker-journal.md): the
//     state directory's jobs.journal, one slot per job slot, mapped
//     shared into memory. A job takes a slot before its JobAccepted,
//     stores there the stage it enters (executor.EnterStage) and frees
//     it when its result is held: stores into the page cache, which kill
//     -9 keeps. Run owns the goroutine that fsyncs it at most once a
//     second. New turns every job an earlier run left in it into a held,
//     written, interrupted result carrying the job's ticket.
//     statelock.go: the directory's flock, held from New until Run
//     returns, so that two processes never share a worker id.
//   - cache.go: the cache summary the hub places jobs by: the build keys
//     (jobspec.CacheKey) of the latest 64 builds, kept in the state
//     directory's cache-keys file, and, when the executor is an
//     executor.CacheInspector, its base images and cache bytes, asked
//     after builds by a goroutine Run owns (inspectCacheLoop), never on a
//     job's path. The summary goes in Register, and in a Heartbeat when it
//     changed: at once (before the job's JobResult) when a build adds a
//     key or the base images change, else with the next heartbeat.
//   - results.go: when a held result is written there (a late ResultAck,
//     a session's end, Run's return) and how that races with the ack.
//     Each result carries its job's dispatch ticket (from RunJob); a
//     session takes it only when the hub's Registered.deployment_id is the
//     ticket's (session.takes), so results stay in their deployment.
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
// (taken before mu, never under it); journal.mu guards the journal and is
// a leaf (taken with neither held, and nothing taken under it). buildCache.mu guards the cache
// summary (taken under Agent.mu by registerFrame, never the reverse) and
// its writeMu the keys file (taken before its mu); a session's hbMu
// orders its heartbeats (taken before Agent.mu and buildCache.mu). Each session has exactly one goroutine that
// calls Send on the stream (fed by two bounded channels, control frames
// before log frames) and one that calls Recv.
package workeragent
