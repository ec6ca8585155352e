// Package bench measures Blacktree on one machine and emits the figures
// as JSON and as a Markdown table; cmd/btbench drives it and `make bench`
// rewrites docs/BENCHMARKS.md from its output.
//
// The machines it runs on are small and shared, so every scenario
// measures a baseline in the same run and reports a ratio to it:
//
//   - dispatch: a backlog drained through a minimal relay on amqp091-go
//     and through the real hub and noop workers, alternating (and through
//     workers with their job journal off, for its cost), then both
//     offered the same fixed rate for latency;
//   - fleet: thousands of in-process workers on one hub (memory, heartbeat
//     CPU, dispatch rate) against a small fleet's dispatch;
//   - failure: a worker killed with SIGKILL and a silently partitioned
//     one, against the hub's grace and heartbeat bounds;
//   - logs: jobs that print like builds, the workers' log flush interval
//     at 0 and at its default.
//
// The hub and workers run with their packages' defaults (hub, workeragent,
// internal/rabbit); btbench passes only what a scenario varies.
//
// Files:
//
//   - dispatch.go: the dispatch comparison (DispatchConfig, RunDispatch),
//     one side's drain and latency run, CPU per job by role.
//   - relay.go: the baseline relay. It imports amqp091-go directly and
//     shares no code with internal/rabbit: it is what the hub is compared
//     against.
//   - amqp.go: queues, the load generator (Publisher) and the status
//     Collector.
//   - ledger.go: every job published and every status received, per job:
//     latencies, losses, duplicates.
//   - stats.go: percentiles, latency summaries, completion rates.
//   - procstat.go: RSS, CPU time and read/write system calls from /proc.
//   - env.go: the built binaries, token files, starting a hub or worker,
//     the hub's /metrics and AdminService.
//   - fleet.go: Fleet, in-process workers speaking the worker protocol.
//   - fleetrun.go: the fleet scenario (FleetRunConfig, RunFleet).
//   - failure.go: the kill -9 and silent-partition scenarios.
//   - logs.go: the log-streaming scenario.
//   - report.go: Report, its JSON and its Markdown.
//
// Goroutines: a Publisher owns one that reads its confirms and a
// Collector one that consumes statuses, each ended by Close; a Relay owns
// its consume and confirm goroutines, ended by Stop; a Fleet owns one that
// starts workers and one per worker, ended by Close, which waits for them.
// The hub and workers write their output to files of their own (Env.start)
// so the load generator does not pay for their log lines. No package lock
// is held across another.
package bench
