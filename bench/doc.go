// Package bench measures Blacktree's dispatch path against a minimal
// relay written straight on amqp091-go (the broker-bound floor), holds a
// large fleet of in-process gRPC worker clients on one hub, times failure
// detection (a killed worker, a silently partitioned one) and measures what
// jobs that print like builds cost the hub.
//
// Every scenario reports a ratio against a baseline measured in the same
// run, because the machines it runs on are small and shared: absolute
// numbers are noise, ratios are the signal. cmd/btbench drives it and
// `make bench` rewrites docs/BENCHMARKS.md from its output.
//
// The logs scenario (logs.go) runs real workers whose noop jobs print like
// builds, with the workers' --log-flush-interval at 0 and at its default,
// alternating: the hub's CPU for the JobLog frames, one setting against
// the other.
//
// Besides Blacktree as deployed (4 worker processes, the hub's defaults),
// the dispatch scenario drains the same slots in one worker process and
// through a hub with --placement binpack.
//
// Floors: the missed targets are also measured on bare grpc-go, with the
// hub's transport settings, in the same run. floor.go holds the fleet's
// streams on a server that only receives (memory and heartbeat CPU);
// dispatchfloor.go drains the backlog through processes that exchange only
// the contract's four frames per job: unpaced, paced at Blacktree's rate
// and at the target's (what the frames cost depends on the rate), and as
// the real hub's workers. Both re-execute the btbench binary
// (FloorServerMain, DispatchFloorMain). grpcrelay.go puts the gRPC hop
// into the relay and nothing else (RunJob, ack on JobAccepted, publish on
// JobResult, ResultAck after the confirm), with the same clients, and
// drains alternately with the relay: what a hub that adds nothing to the
// contract's steps reaches.
//
// The hub and workers write their output to files of their own
// (Env.start), so the load generator does not pay for their log lines.
//
// The baseline relay imports amqp091-go directly: it is the thing the hub
// is compared against, so it deliberately shares no code with
// internal/rabbit.
package bench
