package bench

import (
	"fmt"
	"strings"
	"time"

	"github.com/blacktree/blacktree/hub"
)

// writeFleet renders section 2: the fleet of idle workers, the bare grpc-go
// server beside it, and dispatch with the whole fleet connected.
func (r *Report) writeFleet(p func(string, ...any), f *FleetResult) {
	c := f.Config
	p("## 2. Fleet scale: %d workers on one hub", c.N)
	p("")
	p("%d in-process worker clients (`bench/fleet.go`) speak the worker protocol with the", c.N)
	p("generated client, each on its own gRPC connection (own TCP connection), to the real")
	p("`blacktree-hub` binary on loopback: Register, Heartbeat at the hub's interval (a random")
	p("phase on the hub's grid, as the worker agent picks it), and JobAccepted + a successful")
	p("JobResult for every RunJob. Client keepalive")
	p("30s/10s like the real worker. At most %d register at once. The open-files limit is", c.Parallel)
	p("raised in-process (setrlimit, inherited by the hub): %d.", f.NoFileLimit)
	p("")
	p("Memory is read twice, on the hub and on the bare grpc-go server alike: %s after the", c.Settle)
	p("last registration, and over an idle window that lasts until the process has run %d garbage", c.SteadyGCs)
	p("collections (at least %s, at most %s; RSS read every second, GCs and allocated", c.IdleWindow, c.SteadyMax)
	p("bytes every %d s, from the hub's /metrics). Between collections the heap grows with", probeEvery)
	p("the garbage the heartbeats leave, until the GC goal or Go's forced collection every")
	p("2 minutes, so an RSS read right after the fleet connects understates what the hub")
	p("holds in steady state. The target is judged on the window's peak.")
	p("")
	cpuPct := 100 * f.IdleCPU
	p("| measure | value | target | |")
	p("|---|---:|---|---|")
	p("| time to register all %d | %s | | |", c.N, f.RegisterAll.Round(time.Millisecond))
	p("| hub RSS before → after (%s settle) | %.1f → %.1f MiB | | |", c.Settle, mib(f.RSSBefore), mib(f.RSSAfter))
	p("| hub RSS per idle worker, %s after the last registration | %s | | |", c.Settle, kib(f.RSSPerWorker))
	if fl := f.Floor; fl != nil {
		p("| same fleet on a bare grpc-go server (`bench/floor.go`), RSS per stream, %s after | %s | | |", c.Settle, kib(fl.RSSPerStream))
		if fl.RSSPerStream > 0 {
			p("| hub / bare grpc-go server | %.2f× | | |", f.RSSPerWorker/fl.RSSPerStream)
		}
	}
	for _, m := range perWorkerMetrics {
		v := f.PerWorker(m)
		val := kib(v)
		if m == "go_goroutines" {
			val = fmt.Sprintf("%.2f", v)
		}
		p("| per worker: `%s` (hub /metrics, after − before) | %s | | |", m, val)
	}
	w := f.Idle
	p("| hub's idle window that follows (RSS sampled every second) | %s | | |", w.describe(c.SteadyGCs))
	p("| **hub RSS per idle worker, peak in the idle window** | %s | ≤ 32 KiB | %s |", kib(f.PeakPerWorker()), verdict(f.PeakPerWorker() <= 32*1024))
	p("| hub RSS per idle worker, end of the idle window | %s | | |", kib(f.EndPerWorker()))
	if fl := f.Floor; fl != nil && fl.Idle.Length > 0 {
		p("| same fleet on the bare grpc-go server, peak RSS per stream in its idle window (%s) | %s | | |", fl.Idle.describe(c.SteadyGCs), kib(fl.PeakPerStream()))
		if fl.PeakPerStream() > 0 {
			p("| hub / bare grpc-go server, idle-window peaks | %.2f× | | |", f.PeakPerWorker()/fl.PeakPerStream())
		}
		p("| heap allocated per heartbeat in the bare grpc-go server's idle window | %.0f B | | |", fl.Idle.AllocPerHeartbeat())
	}
	p("| heap allocated per heartbeat in the hub's idle window | %.0f B | | |", w.AllocPerHeartbeat())
	if w.MetricsEnd != nil {
		for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes"} {
			p("| per worker: `%s` at the end of the idle window | %s | | |", m, kib((w.MetricsEnd[m]-f.MetricsBefore[m])/float64(c.N)))
		}
	}
	p("| hub CPU, no workers (3s) | %.2f%% of a core | | |", 100*f.IdleCPUNoWorkers)
	st := f.Stats
	p("| heartbeat interval the hub gave the fleet (%d HeartbeatInterval frames while it grew; `--max-heartbeat-rate`, G25) | %s | | |", st.IntervalUpdates, st.Interval)
	p("| heartbeat grid the hub gave the fleet (phases on its multiples, on the wall clock; `--heartbeat-grid`, G26) | %s | | |", gridText(st.Grid))
	if w.Length > 0 {
		p("| heartbeats per second in the idle window | %.0f | | |", float64(w.Heartbeats)/w.Length.Seconds())
	}
	p("| hub CPU with %d idle workers (the idle window, %d heartbeats, GCs included) | %.2f%% of a core | ≤ 10%% | %s |", c.N, w.Heartbeats, cpuPct, verdict(cpuPct <= 10))
	if fl := f.Floor; fl != nil && fl.Idle.Heartbeats > 0 && w.Heartbeats > 0 {
		p("| same fleet on the bare grpc-go server, CPU in its idle window (%d heartbeats) | %.2f%% of a core | | |", fl.Idle.Heartbeats, 100*fl.Idle.CPU)
		hubHB, floorHB := w.CPUPerHeartbeat(), fl.Idle.CPUPerHeartbeat()
		if floorHB > 0 {
			p("| CPU per heartbeat (all of the window's CPU / its heartbeats): hub / bare grpc-go server | %.1f / %.1f µs = %.2f× | | |",
				float64(hubHB)/float64(time.Microsecond), float64(floorHB)/float64(time.Microsecond), float64(hubHB)/float64(floorHB))
		}
	}
	p("| workers the hub lists live | %d | %d | %s |", f.HubListsLive, c.N, verdict(f.HubListsLive == c.N))
	p("| dispatch throughput with %d connected | %.0f jobs/s | | |", c.N, f.Throughput)
	if f.SmallN > 0 && f.SmallThroughput > 0 {
		p("| same dispatch with %d connected (own hub, same run) | %.0f jobs/s | | |", f.SmallN, f.SmallThroughput)
		p("| ratio %d / %d workers | %.2f× | | |", c.N, f.SmallN, f.Throughput/f.SmallThroughput)
	}
	if b := f.Busy; b != nil && b.Throughput > 0 {
		p("| same dispatch with %d workers of %d slots, each keeping %d jobs running (every worker partly busy; own hub) | %.0f jobs/s | | |",
			b.N, b.Slots, b.Hold, b.Throughput)
		if f.SmallN > 0 && f.SmallThroughput > 0 {
			p("| ratio partly busy %d / %d workers | %.2f× | | |", b.N, f.SmallN, b.Throughput/f.SmallThroughput)
		}
		p("| placing the %d jobs those workers keep | %.0f jobs/s | | |", b.Held, b.HoldRate)
	}
	p("")
	p("Dispatch here runs with the publisher going at full speed concurrently (the hub is")
	p("already consuming), so it is not directly comparable to §1's backlog drain; its")
	p("reference is the same measurement with a small fleet on a hub of its own, in the")
	p("same run.")
	p("")
	p("- dispatch ledger: %s", f.DispatchAccount)
	if b := f.Busy; b != nil {
		p("- dispatch ledger, partly busy fleet: %s", b.Account)
	}
	p("- fleet counters: registered=%d failed=%d disconnected=%d jobs=%d result-acks=%d heartbeats=%d heartbeat-interval-frames=%d",
		st.Registered, st.Failed, st.Disconnected, st.Jobs, st.Acks, st.Heartbeats, st.IntervalUpdates)
	p("- hub command line: `blacktree-hub %s`", strings.Join(f.HubArgs, " "))
	p("")
	p("Hub CPU profile, idle fleet (heartbeats only; from the binary via `--pprof`, taken")
	p("after the CPU window above):")
	p("")
	p("```")
	p("%s", strings.TrimSpace(f.CPUProfile))
	p("```")
	p("")
	p("Hub heap profile (inuse_space) with the fleet connected:")
	p("")
	p("```")
	p("%s", strings.TrimSpace(f.HeapProfile))
	p("```")
	p("")
}

// writeFailure renders section 3: kill -9 and partition detection times.
func (r *Report) writeFailure(p func(string, ...any), f *FailureResult) {
	p("## 3. Failure detection")
	p("")
	p("**kill -9**: one real noop worker (`--noop-delay 1h`) runs a job; once ListJobs shows")
	p("it RUNNING the worker gets SIGKILL; timed until the lost-job status arrives on")
	p("`status.queue`.")
	p("")
	p("| --lost-worker-grace | kill → lost-job status | target (grace + 1 s) | status | |")
	p("|---|---:|---:|---|---|")
	for _, k := range f.Kills {
		g := k.Grace.String()
		if !k.Flagged {
			g += " (default, flag not passed)"
		}
		p("| %s | %s | %s | %s | %s |", g, k.Detected.Round(time.Millisecond), k.Grace+time.Second, k.Error, verdict(k.Detected <= k.Grace+time.Second && !k.Success))
	}
	p("")
	p("**Silent partition**: the worker dials the hub through a userspace TCP proxy on")
	p("loopback (`internal/cluster` Proxy); at the partition the proxy keeps both sockets open and")
	p("keeps reading, but drops every byte (no FIN, no RST; TCP itself stays healthy, so only")
	p("gRPC keepalive and application heartbeats can notice). Timed until ListWorkers shows")
	p("the worker `dead` (polled every 50 ms).")
	p("")
	pr := f.Partition
	p("Bounds (hub defaults): %s of silence (3 missed heartbeats at the interval the hub", pr.HeartbeatBound)
	p("hands out in Registered) closes the session; gRPC keepalive (ping after %s quiet,", hub.DefaultKeepaliveTime)
	p("%s to answer = %s) is the transport backstop. The partition starts as soon as", hub.DefaultKeepaliveTimeout, pr.KeepaliveBound)
	p("ListWorkers shows the worker live — typically right after its Register frame reset the")
	p("hub's silence timer — so expect about the full %s (the worst case); a partition in", pr.HeartbeatBound)
	p("mid-interval is detected up to one heartbeat interval (%s) sooner.", hub.DefaultHeartbeatInterval)
	const large = 10000
	if d, err := hub.FleetHeartbeatInterval(hub.Config{}, large); err == nil && d != hub.DefaultHeartbeatInterval {
		p("This hub has one worker. With %d workers it gives them %s instead (`--max-heartbeat-rate`, G25),", large, d)
		p("so a silent worker there is dead after %s, still within the keepalive bound for a", time.Duration(hub.DefaultMissedHeartbeats)*d)
		p("silent network; keepalive does not help with a worker stuck behind a live connection.")
	}
	p("")
	if pr.TimedOut {
		p("- partition → dead: **not detected within %s** — **missed**", pr.Dead)
	} else {
		p("- partition → dead: **%s** (bound %s; keepalive bound %s) — %s", pr.Dead.Round(time.Millisecond),
			pr.HeartbeatBound, pr.KeepaliveBound, verdict(pr.Dead <= pr.HeartbeatBound+time.Second))
	}
	p("- the hub's liveness settings (`blacktree-hub --help`):")
	for _, b := range f.Partition.Bounds {
		p("  - `%s`", b)
	}
	p("")
}

// writeProfile renders section 4: the in-process hub's CPU profiles.
func (r *Report) writeProfile(p func(string, ...any), pr *ProfileResult) {
	p("## 4. Profiles (in-process hub)")
	p("")
	p("These come from a hub run inside btbench (package `hub` on `internal/rabbit`, as the")
	p("binary wires them, minus auth; logs discarded) with in-process workers, so that one")
	p("profile shows hub and worker side by side. Every hub goroutine carries the pprof label")
	p("`side=hub`, the workers' `side=worker`; the tops below use `-tagfocus`, so the load")
	p("generator and fleet in the same process are excluded. (§1 and §2 show the binary's own")
	p("profiles when it serves `--pprof`.) Profiles are in `%s`.", pr.Dir)
	p("")
	p("Two backlog drains of %d jobs through the in-process hub and %d in-process noop workers", r.dispatchJobs(), r.dispatchWorkers())
	p("(package `workeragent`, labelled `side=worker`): first with a state directory per worker")
	p("(as the binary runs by default), then without (ephemeral). Tops are `-cum` sorted;")
	p("their percentages are of all samples in the process — the `pprof -tags` block gives")
	p("each side's share, to turn them into shares of the hub's own CPU.")
	p("")
	for _, d := range pr.Drains {
		name := "ephemeral workers"
		if d.Stateful {
			name = "workers with a state directory"
		}
		p("### Drain with %s: %.0f jobs/s (`%s`)", name, d.Throughput, d.Path)
		p("")
		p("Samples by side (`pprof -tags`):")
		p("")
		p("```")
		p("%s", d.Tags)
		p("```")
		p("")
		p("Hub side (`-tagfocus=side=hub`):")
		p("")
		p("```")
		p("%s", strings.TrimSpace(d.HubCPU))
		p("```")
		p("")
		p("Worker side (`-tagfocus=side=worker`):")
		p("")
		p("```")
		p("%s", strings.TrimSpace(d.WorkerCPU))
		p("```")
		p("")
	}
	if pr.FleetN > 0 {
		p("CPU with %d idle in-process workers (heartbeats only): samples by side, then the hub (`-cum`):", pr.FleetN)
		p("")
		p("```")
		p("%s", strings.TrimSpace(pr.FleetCPU))
		p("```")
		p("")
		if pr.FleetDispatchCPU != "" {
			p("CPU while dispatching with %d workers connected (%.0f jobs/s in-process;", pr.FleetN, pr.FleetDispatchThroughput)
			p("the publisher runs concurrently): samples by side, then the hub (`-cum`):")
			p("")
			p("```")
			p("%s", strings.TrimSpace(pr.FleetDispatchCPU))
			p("```")
			p("")
		}
		p("Hub goroutines with %d workers connected (goroutine profile, `-tagfocus=side=hub`):", pr.FleetN)
		p("")
		p("```")
		p("%s", strings.TrimSpace(pr.FleetGoroutines))
		p("```")
		p("")
		p("Heap in use with %d workers connected, hub-side frames only (`-focus=%s`):", pr.FleetN, hubFrames)
		p("")
		p("```")
		p("%s", strings.TrimSpace(pr.FleetHeap))
		p("```")
		p("")
	}
}

// gridText is a heartbeat grid for the report: none when off.
func gridText(d time.Duration) string {
	if d <= 0 {
		return "none (any phase)"
	}
	return d.String()
}
