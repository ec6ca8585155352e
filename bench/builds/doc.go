// Package builds measures time to image: how long a user waits from
// asking for an image to having it pushed, through Blacktree and by hand.
// cmd/btbench-builds drives it and `make bench-builds` rewrites
// docs/BENCHMARKS-builds.md and docs/bench/builds.json from its output.
//
// Two scenarios, each with its baseline in the same run:
//
//   - rebuild.go: one worker on the machine's Docker engine against the
//     hand-run `git clone --depth 1 && docker build && docker push`
//     (handrun.go) on the same engine, git server and registry, a cold
//     build then a warm one after a one-file change, alternating which
//     side goes first each round;
//   - fleet.go: workers each on an engine of their own
//     (scripts/dockerd-fleet), repositories rebuilt round after round,
//     with the hub's cache-affinity placement and then spread. Hub flags
//     the hub lacks (--cache-affinity, --affinity-wait) and the worker's
//     --builder are passed only where the binaries have them (env.go).
//
// The rest: config.go (Config), env.go (binaries, tokens, git server,
// registry, base image), deploy.go (a hub, its workers and a control
// plane; timing a set of jobs), repo.go (repositories and their changes),
// stats.go (quantiles, cache hits), result.go (the measured builds, their
// summaries, the targets), report.go (JSON and Markdown), run.go (Run).
//
// Goroutines: deployment.buildAll starts one per published job, each
// waiting for its response, and waits for them all before it returns.
// Every process a run starts (hub, workers, extra engines) is stopped
// before Run returns.
package builds
