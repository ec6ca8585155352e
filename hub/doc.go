// Package hub is Blacktree's hub: it consumes JobRequests from the broker,
// pushes each to a free worker agent over that agent's long-lived
// WorkerService.Connect stream, and publishes the worker's JobResponse to
// the status queue (docs/protocol.md).
//
// The pieces, by file:
//
//   - hub.go: Hub (Config/New/Run/Shutdown), the gRPC and HTTP servers and
//     the one stop path.
//   - connect.go: the Connect handler. After Register the handler itself is
//     the session's receive loop; endSession takes an ended session out of
//     the fleet the moment it ends.
//   - session.go: Worker, one connected agent. It owns its stream's sending
//     side: a bounded queue and at most one sender, which runs only while
//     frames are queued (an idle worker costs grpc-go's three goroutines
//     and the handler, nothing more).
//   - conns.go: the accepted connections by remote address, so the hub can
//     close the connection of a session it ended while the handler is
//     blocked in Recv (grpc-go cannot end a server stream from outside).
//     It also caps connections in total and per IP at accept, and closes
//     a connection that made no authenticated call in time (one
//     time.AfterFunc per connection until it authenticates).
//   - preauth.go: what runs before a call is authenticated: the
//     InTapHandle (Config.TapHandle on the headers, before any message is
//     read; marks the connection authenticated) and the connection
//     limits. grpcserver.go sets the handshake timeout and header limit;
//     codec.go bounds requests other than worker frames.
//   - admission.go: the Register bounds beyond validateRegister's, and
//     admit, which refuses a denied worker id or a credential over
//     Config.MaxSessionsPerCredential (sessionCounter) before the session
//     starts. operator.go: the operator's drains and denies by worker id,
//     kept in the WorkerManager (behind its mu) across sessions.
//   - handshake.go: the worker protocol version check (checkProtocol,
//     before admit): a Register outside Config.MinProtocolVersion ..
//     MaxProtocolVersion is refused with FailedPrecondition naming both
//     versions; 0 (a worker from before the field) is version 1.
//   - manager.go: WorkerManager, the live set of workers and their states
//     (free/busy/draining/dead), inferred from the streams.
//   - placement.go: Placement (spread, binpack) and pick, which reserves
//     a job's slot: a free warm worker first, then the placement's order
//     over the idle list (entrylist.go) and the load index (loadindex.go).
//   - cachesummary.go, warmindex.go: cache-aware placement. Each worker's
//     CacheSummary (in Register, and in a Heartbeat when it changed) is
//     bounded and kept on its entry; the warm index files live workers
//     under the build keys they hold, the free ones apart, so that pick
//     finds a free worker warm for a job (jobspec.CacheKey) by inspecting
//     a bounded few, whatever the fleet's size. Config.AffinityWait lets
//     a job wait for a busy warm worker; Config.DisableCacheAffinity
//     places ignoring caches.
//   - heartbeat.go: the missed-heartbeat timers, behind the manager's
//     mutex, and the heartbeat interval, which doubles as the fleet grows
//     past Config.MaxHeartbeatRate × interval workers (workers that take
//     updates are sent a HeartbeatInterval frame with their next
//     heartbeat), so the heartbeats the hub receives stay bounded however
//     large the fleet; and the grid (Config.HeartbeatGrid) workers put
//     their heartbeats on, so that they arrive in groups.
//   - dispatcher.go, results.go: Dispatcher, the job table. It acks a
//     delivery only after JobAccepted, holds deliveries that find no free
//     worker for at most HoldTimeout, publishes results before ResultAck,
//     and reports jobs of lost workers after LostWorkerGrace.
//   - capacity.go: consumption follows capacity. The WorkerManager counts
//     the free slots of the workers that take jobs and signals each change
//     (capacityChanged, never blocking); the Dispatcher's run loop then
//     tells a Pacer broker its window, the free slots plus
//     Config.Lookahead, 0 with none free (docs/design/consumption.md).
//   - status.go: a status's last step before the broker: its fields bounded
//     again (the hub does not trust the worker's bounds) to fit
//     Config.MaxStatusBytes once encoded, else a failed status that says
//     so; results.go publishes that in place of one the broker refuses
//     for its size.
//   - codec.go: frameCodec, grpc-go's proto codec except that the receive
//     loop decodes a heartbeat into the previous heartbeat's structs (an
//     idle fleet's garbage, and so the hub's steady-state memory, is mostly
//     decoded heartbeats).
//   - identity.go: who a worker is and what it owns. claimIdentity binds a
//     worker id to the credential (Config.Credential) of its session while
//     the id has a live session or running or orphaned jobs; ticketer
//     issues and checks dispatch tickets (an HMAC under
//     Config.DispatchKey over Config.DeploymentID, worker id, credential
//     and job id), by which a job this hub does not hold is claimed or
//     reported after a hub restart or a move. The Dispatcher (results.go)
//     takes JobAccepted and JobRejected only from the session a job is
//     offered to, and JobResult and a Register's running jobs through
//     ownsLocked (docs/protocol.md#ownership).
//   - progress.go: JobProgress. The Dispatcher keeps the stage a job's
//     session last reported (job.stage, one enum per job, under its mu),
//     reset when the job runs on another session, and ListJobs shows it
//     while the job runs.
//   - events.go: job events (Config-free: on when the Broker is an
//     EventPublisher with an exchange). The Dispatcher numbers a job's
//     events (job.eventSeq) and offers them under its mu to the
//     eventPublisher's bounded buffer, which never blocks and drops
//     (counted) when full; one goroutine publishes them in order.
//   - drain.go: fencing (WorkerInfo.fenced: the hub offers the worker
//     nothing and the worker said it drains) and the requeue at once of a
//     job a draining worker rejected when no other worker is free.
//   - autoscale.go: the autoscaling gauges: ready messages per queue (a
//     QueueInspector broker, asked at most once a second under the
//     collector's own leaf mutex), deliveries this hub holds unacked, and
//     slots by label set (bounded to 64 sets).
//   - cancel.go, cancel_tombstones.go: cancellation
//     (docs/design/cancellation.md). Dispatcher.cancel is the one path of
//     the cancel queue (a Canceller broker) and AdminService.CancelJob: a
//     held job is answered cancelled, an offered, running or orphaned one
//     is marked and its worker sent CancelJob (now, or when it comes
//     back), a finished one is left alone, and an id not held here is
//     remembered in tombstones (bounded by Config.CancelTombstoneTTL and
//     Config.MaxCancelTombstones, guarded by the Dispatcher's mu) so that
//     the job, delivered later, is answered cancelled and never run. The
//     cancel is then announced to every hub; a cancel-queue message is
//     acked once announced. cancel_admin.go: AdminService.CancelJob.
//   - admin.go: AdminService. httpserver.go: /healthz, /readyz, /metrics,
//     and the console under /ui/.
//   - console.go, logtap.go: the operator console (package console), on
//     when Config.ConsoleAuth is set. It reads and acts through the
//     AdminService in-process; the Dispatcher writes running jobs' output
//     into the logTap (bounded: the tail of each of a bounded number of
//     jobs) in jobLog, and ends it when a status is confirmed or the job
//     leaves; the console reads it by cursor.
//
// Locking: the Hub's idLocks (one per stripe of worker ids) serialise the
// identity check and registration of one worker id; they are taken before
// any other lock and never held across a wait on the worker. The
// Dispatcher's mu and the WorkerManager's mu each guard their own state.
// The connRegistry's and the sessionCounter's mu, the eventPublisher's
// dropMu and the logTap's mu are leaves: nothing is called while they are held. The order is Dispatcher.mu before
// WorkerManager.mu; the manager never calls into the Dispatcher while
// holding its lock. No lock is held across broker I/O or a blocking send.
// The ledgerWriter's mu is a leaf; the ledgerBook has no lock (the
// keeper's goroutine owns it).
//
// Goroutines: Run starts the servers, the dispatch loop, the connection
// sweeper, with events the event publisher (ended with the ledger's, after
// the Dispatcher has stopped, then flushing for at most 2 s), and, with a
// ledger, the ledger writer and keeper (all in
// Hub.bgWG, ended by the stop path; the ledger's after the Dispatcher has
// stopped, so that the last statuses are flushed as done). The
// Dispatcher's publish and announcement goroutines (cancel announcements
// included) are in Dispatcher.wg.
package hub
