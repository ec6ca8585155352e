// Package bench measures Blacktree's dispatch path against a minimal
// relay written straight on amqp091-go (the broker-bound floor), holds a
// large fleet of in-process gRPC worker clients on one hub, and times
// failure detection (a killed worker, a silently partitioned one).
//
// Every scenario reports a ratio against a baseline measured in the same
// run, because the machines it runs on are small and shared: absolute
// numbers are noise, ratios are the signal. cmd/btbench drives it and
// `make bench` rewrites docs/BENCHMARKS.md from its output.
//
// The baseline relay imports amqp091-go directly: it is the thing the hub
// is compared against, so it deliberately shares no code with
// internal/rabbit.
package bench
