package bench

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// writeDispatch renders section 1: the relay, Blacktree as deployed and
// its variants, the rounds, latency, CPU by role and the floor's bound.
func (r *Report) writeDispatch(p func(string, ...any), d *DispatchResult) {
	c := d.Config
	p("## 1. Dispatch path vs. raw RabbitMQ")
	p("")
	p("**Baseline**: a minimal relay on amqp091-go (`bench/relay.go`): consume `execute.queue`")
	p("with prefetch %d, decode the request, publish a persistent response to `status.queue`", c.Prefetch)
	p("with publisher confirms (consumer and publisher on separate connections), ack after the")
	p("confirm — the broker-bound floor. **Blacktree**: the real `blacktree-hub` binary")
	p("(`--prefetch %d`) and %d real `blacktree-worker` processes (`--executor noop", c.Prefetch, c.Workers)
	p("--noop-delay 0s --slots %d`, each with its own `--state-dir`, as deployed), on loopback,", c.Slots)
	p("plaintext, with token auth. **Blacktree, one worker process**: the same hub with the")
	p("same %d slots in a single worker process (`--slots %d`): the benchmark puts every", c.Workers*c.Slots, c.Workers*c.Slots)
	p("worker on the same two cores as the hub and the broker, where a real fleet's workers")
	p("run on their own machines, so this shows what the extra worker runtimes cost here.")
	if d.side(sideBinpack) != nil {
		p("**Blacktree, binpack placement**: as deployed, with the hub's `--placement binpack` (the")
		p("most loaded worker with a free slot gets the job; the default, spread, takes the least")
		p("loaded): a busy worker's frames travel together (G22).")
	}
	p("The targets are judged on the as-deployed column, the hub's defaults.")
	p("")
	p("Throughput: %d jobs are published first (a backlog), then the consumer side is started", c.Jobs)
	p("and status arrivals are timed; the first %.0f%% (start-up, first window) are dropped.", 100*c.Skip)
	if len(d.Rounds) > 0 {
		also := ""
		if d.side(sideBinpack) != nil {
			also = " (and with binpack placement)"
		}
		p("The baseline and Blacktree as deployed%s drain %d times each, alternating (the table shows", also, len(d.Rounds)+1)
		p("the first round; later rounds run on fresh processes and queues); the throughput")
		p("verdict takes the median of the rounds' ratios.")
	}
	p("Latency: publish → status received (publish timestamps in a side map keyed by jobId,")
	p("one clock), open-loop publishing at a fixed rate for %s, every side offered the same", c.LatencyFor)
	p("rates. Blacktree's latency is split at the worker's `startedAt` and `finishedAt` (the")
	p("status carries them); the hub's row is its `blacktree_status_publish_seconds` histogram")
	p("over the run (JobResult taken up → status confirmed, interpolated within doubling")
	p("buckets): the collector may get a status before its confirm, so this is not a part of")
	p("the leg above it but what the hub waits for before its ResultAck.")
	p("The CPU row is each role's CPU while draining, as a fraction of one core")
	p("(btbench = the load generator and status collector, plus the relay itself for the")
	p("baseline; broker = RabbitMQ's Erlang VM, the processes named beam.smp). System calls")
	p("are the reads and writes each role made while draining (`syscr` + `syscw` in")
	p("/proc/<pid>/io; futex and epoll waits are not counted), per job drained.")
	p("")
	head := "| |"
	sep := "|---|"
	for _, s := range d.Sides {
		head += " " + s.Name + " |"
		sep += "---:|"
	}
	p("%s", head)
	p("%s", sep)
	row := func(name string, f func(s SideResult) string) {
		line := "| " + name + " |"
		for _, s := range d.Sides {
			line += " " + f(s) + " |"
		}
		p("%s", line)
	}
	row("throughput (jobs/s)", func(s SideResult) string { return fmt.Sprintf("%.0f", s.Throughput) })
	row("ratio to baseline", func(s SideResult) string {
		return fmt.Sprintf("%.2f×", s.Throughput/d.Sides[0].Throughput)
	})
	row("machine CPU busy while draining", func(s SideResult) string { return fmt.Sprintf("%.0f%%", 100*s.DrainMachineBusy) })
	row("CPU while draining (of one core)", func(s SideResult) string { return roles(s.DrainCPU) })
	row("CPU per job, µs (rest = the machine's busy time not charged to these processes)", func(s SideResult) string { return perJob(s) })
	row("read and write system calls per job (/proc/<pid>/io)", func(s SideResult) string { return syscallsPerJob(s) })
	row("drain ledger", func(s SideResult) string { return ledgerShort(s.DrainAccount) })
	for i, rate := range d.Rates {
		p("| **latency at %.0f jobs/s** (%s) | | |%s", rate, d.RateLabels[i], strings.Repeat(" |", max(0, len(d.Sides)-2)))
		get := func(s SideResult) (LatencyRun, bool) {
			if i < len(s.Latency) && s.Latency[i].Skipped == "" {
				return s.Latency[i], true
			}
			return LatencyRun{}, false
		}
		for _, pc := range []struct {
			name string
			f    func(Latency) time.Duration
		}{{"p50", func(l Latency) time.Duration { return l.P50 }}, {"p90", func(l Latency) time.Duration { return l.P90 }},
			{"p99", func(l Latency) time.Duration { return l.P99 }}, {"p99.9", func(l Latency) time.Duration { return l.P999 }},
			{"max", func(l Latency) time.Duration { return l.Max }}} {
			row(pc.name, func(s SideResult) string {
				run, ok := get(s)
				if !ok {
					return "—"
				}
				return ms(pc.f(run.Latency))
			})
		}
		for _, leg := range []struct {
			name string
			f    func(LatencyRun) Latency
		}{{"publish → worker started, p50 / p99", func(r LatencyRun) Latency { return r.ToWorker }},
			{"worker finished → status received, p50 / p99", func(r LatencyRun) Latency { return r.Back }},
			{"hub: JobResult → status confirmed by the broker (its histogram), p50 / p99", func(r LatencyRun) Latency { return r.HubPublish }}} {
			row(leg.name, func(s SideResult) string {
				run, ok := get(s)
				if l := leg.f(run); ok && l.N > 0 {
					return ms(l.P50) + " / " + ms(l.P99)
				}
				return "—"
			})
		}
		row("CPU per job at this rate, µs", func(s SideResult) string {
			run, ok := get(s)
			if !ok || len(run.CPUPerJob) == 0 {
				return "—"
			}
			return rolesPerJob(run.CPUPerJob)
		})
		row("publisher max lag / ledger", func(s SideResult) string {
			run, ok := get(s)
			if !ok {
				if i < len(s.Latency) {
					return "not run: " + s.Latency[i].Skipped
				}
				return "—"
			}
			return ms(run.MaxLag) + " / " + ledgerShort(run.Account)
		})
	}
	p("")
	p("Targets:")
	p("")
	ratio := d.ThroughputRatio()
	if rs := d.RoundRatios(); len(rs) > 1 {
		p("- throughput ≥ 0.8× baseline: Blacktree %.2f×, the median of %d alternating rounds (%s) — %s",
			ratio, len(rs), roundList(d), verdict(ratio >= targetRatio))
	} else {
		p("- throughput ≥ 0.8× baseline: Blacktree %.2f× — %s", ratio, verdict(ratio >= targetRatio))
	}
	if one := d.side(sideOneWorker); one != nil {
		p("  (one worker process: %.2f×)", one.Throughput/d.Sides[0].Throughput)
	}
	if rs := d.binpackRatios(); len(rs) > 0 {
		p("  (binpack placement: %.2f×, the median of %s)", d.BinpackRatio(), ratioList(rs))
	}
	if len(d.Sides) > 1 {
		if budget, used, ok := budget(d.Sides[0], d.Sides[1], targetRatio); ok {
			p("- CPU budget: both sides saturate the machine's CPU, so jobs/s follow CPU per job. For 0.8×,")
			if budget > 0 {
				p("  Blacktree may spend at most %.0f µs of CPU per job in the hub and workers together (the", budget)
			} else {
				// What Blacktree's side spends outside the hub and workers
				// already exceeds the whole allowance.
				p("  nothing is left for the hub and workers: Blacktree's broker, collector and rest alone")
				p("  exceed the allowance by %.0f µs per job (the", -budget)
			}
			p("  baseline's total per job / 0.8, less what Blacktree's side spends in the broker and the")
			p("  collector); in this run they spent **%.0f µs**.", used)
			if f := d.Floor; f != nil {
				writeFloorBullet(p, f, d.FloorAtRate, used)
			}
			if f, at := d.Floor, d.FloorAtTarget; f != nil && at != nil {
				writeBoundBullet(p, d.Sides[0], f, at, runtime.NumCPU())
			}
			if h := d.HubFloorClients; h != nil && h.Throughput > 0 {
				writeHubFloorBullet(p, h, d.Sides[0].Throughput)
			}
			if len(d.GRPCRelay) > 0 {
				writeGRPCRelayBullet(p, d.GRPCRelay)
			}
		}
	}
	if len(d.Sides) > 1 && len(d.Rates) > 0 {
		b, bt := d.Sides[0].Latency[0], d.Sides[1].Latency[0]
		if bt.Skipped != "" {
			p("- p99 ≤ baseline p99 + 2 ms at half the baseline's saturation: **missed** — Blacktree cannot")
			p("  sustain that load at all (%s)", bt.Skipped)
		} else {
			added := bt.Latency.P99 - b.Latency.P99
			p("- p99 ≤ baseline p99 + 2 ms at half the baseline's saturation: %+.2f ms — %s", float64(added)/1e6, verdict(added <= 2*time.Millisecond))
		}
		if len(d.Rates) > 1 && len(d.Sides[0].Latency) > 1 && len(d.Sides[1].Latency) > 1 {
			b, bt := d.Sides[0].Latency[1], d.Sides[1].Latency[1]
			if b.Skipped == "" && bt.Skipped == "" {
				added := bt.Latency.P99 - b.Latency.P99
				p("- for information, at half of Blacktree's own saturation: p99 %+.2f ms over the baseline", float64(added)/1e6)
			}
			for _, v := range []struct{ name, label string }{{sideOneWorker, "one worker process"}, {sideBinpack, "binpack placement"}} {
				if o := d.side(v.name); o != nil && len(o.Latency) > 1 && b.Skipped == "" && o.Latency[1].Skipped == "" {
					added := o.Latency[1].Latency.P99 - b.Latency.P99
					p("  (%s: p99 %+.2f ms)", v.label, float64(added)/1e6)
				}
			}
		}
		if len(d.Rates) > 2 && len(d.Sides[0].Latency) > 2 && len(d.Sides[1].Latency) > 2 {
			b, bt := d.Sides[0].Latency[2], d.Sides[1].Latency[2]
			if b.Skipped == "" && bt.Skipped == "" {
				added := bt.Latency.P99 - b.Latency.P99
				p("- for information, at %s (%.0f jobs/s): p99 %+.2f ms over the baseline (p50 %+.2f ms)",
					d.RateLabels[2], d.Rates[2], float64(added)/1e6, float64(bt.Latency.P50-b.Latency.P50)/1e6)
			}
		}
	}
	p("")
	p("Hub: `blacktree-hub %s`  ", strings.Join(d.HubArgs, " "))
	p("Worker: `blacktree-worker %s`", strings.Join(d.WorkerArgs, " "))
	p("")
	p("Hub CPU profile while draining (from the binary via `--pprof`, 5 s during the")
	p("as-deployed drain; shares are of the hub's own samples):")
	p("")
	p("```")
	p("%s", strings.TrimSpace(d.Profile))
	p("```")
	p("")
	if d.ProfileOneWorker != "" {
		p("The same during the one-worker-process drain:")
		p("")
		p("```")
		p("%s", strings.TrimSpace(d.ProfileOneWorker))
		p("```")
		p("")
	}
}

// roundList renders each round's jobs/s and ratio, the first round first.
func roundList(d *DispatchResult) string {
	var parts []string
	for _, r := range d.allRounds() {
		parts = append(parts, fmt.Sprintf("%.0f / %.0f jobs/s = %.2f×", r.Blacktree, r.Baseline, r.Blacktree/r.Baseline))
	}
	return strings.Join(parts, "; ")
}

// ratioList renders ratios as "0.41×, 0.45× and 0.52×".
func ratioList(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f×", r)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// roleOrder is the order roles are printed in.
var roleOrder = []string{"btbench", "hub", "workers", "broker"}

// byRole formats each role present in m, in roleOrder, as its name and its
// value times scale, with verb (e.g. "%.0f").
func byRole[V int64 | float64](m map[string]V, verb string, scale float64) []string {
	var parts []string
	for _, k := range roleOrder {
		if v, ok := m[k]; ok {
			parts = append(parts, k+" "+fmt.Sprintf(verb, float64(v)*scale))
		}
	}
	return parts
}

// syscallsPerJob is each role's read and write system calls per job
// drained.
func syscallsPerJob(s SideResult) string {
	jobs := float64(s.DrainAccount.Answered)
	if jobs <= 0 || len(s.DrainSyscalls) == 0 {
		return "—"
	}
	return strings.Join(byRole(s.DrainSyscalls, "%.1f", 1/jobs), ", ")
}

// rolesPerJob prints CPU per job by role (µs), then the machine's total.
func rolesPerJob(m map[string]float64) string {
	return strings.Join(append(byRole(m, "%.0f", 1), fmt.Sprintf("**total %.0f**", m["total"])), ", ")
}

// perJob is each role's CPU per job in µs of one core, and the rest of
// the machine's busy CPU (kernel work not charged to a process, and
// anything else running) per job.
func perJob(s SideResult) string {
	if s.Throughput <= 0 {
		return "—"
	}
	total := s.DrainMachineBusy * float64(runtime.NumCPU())
	rest := total
	for _, k := range roleOrder {
		rest -= s.DrainCPU[k]
	}
	us := 1e6 / s.Throughput
	parts := append(byRole(s.DrainCPU, "%.0f", us), fmt.Sprintf("rest %.0f", max(rest, 0)*us), fmt.Sprintf("**total %.0f**", total*us))
	return strings.Join(parts, ", ")
}

// writeFloorBullet compares the dispatch floor's CPU per job with what the
// hub and workers spent (used, µs per job): unpaced (f, the floor's own
// saturation) and paced at Blacktree's rate (at, when measured), which is
// the like-for-like comparison: CPU per job grows as the rate falls.
func writeFloorBullet(p func(string, ...any), f, at *DispatchFloor, used float64) {
	p("- dispatch floor (`bench/dispatchfloor.go`): a bare grpc-go server and %d client processes", f.Clients)
	p("  exchanging only the contract's four frames per job (RunJob, JobAccepted, JobResult,")
	p("  ResultAck; %d outstanding per client, no broker, no work, one goroutine of ours per", f.Slots)
	p("  stream) drained %d jobs at %.0f jobs/s, spending **%.0f µs** of CPU per job (server %.0f,", f.Jobs, f.Throughput, f.framesCPU(), f.CPUPerJob["server"])
	p("  clients %.0f; reads and writes per job: server %.2f, clients %.2f).", f.CPUPerJob["clients"], f.SyscallsPerJob["server"], f.SyscallsPerJob["clients"])
	if at != nil {
		p("  Handed out at Blacktree's own rate (%.0f jobs/s%s) it spent **%.0f µs** per job (server %.0f,", at.Rate, burstNote(at), at.framesCPU(), at.CPUPerJob["server"])
		p("  clients %.0f; reads and writes per job: server %.2f, clients %.2f).", at.CPUPerJob["clients"], at.SyscallsPerJob["server"], at.SyscallsPerJob["clients"])
		if at.framesCPU() > 0 {
			p("  The hub and workers spent %.1f× that (%.1f× the unpaced floor).", used/at.framesCPU(), used/f.framesCPU())
		}
	} else if f.framesCPU() > 0 {
		p("  The hub and workers spent %.1f× that.", used/f.framesCPU())
	}
}

// burstNote names a paced floor's bursts (BTBENCH_FLOOR_BURST), if any.
func burstNote(f *DispatchFloor) string {
	if f.Burst > 1 {
		return fmt.Sprintf(", handed out %d at a time", f.Burst)
	}
	return ""
}

// ratioBound is the most a design can reach, as a ratio to the baseline's
// jobs/s, that does the baseline's work (its whole CPU per job: broker,
// load generator, the relay's AMQP calls) plus frames costing frames µs of
// CPU per job, on cpus cores. needed is that CPU per job in µs.
func ratioBound(base SideResult, frames float64, cpus int) (bound, needed float64) {
	if base.Throughput <= 0 {
		return 0, 0
	}
	needed = base.DrainMachineBusy*float64(cpus)*1e6/base.Throughput + frames
	if needed <= 0 {
		return 0, 0
	}
	return float64(cpus) * 1e6 / needed / base.Throughput, needed
}

// writeBoundBullet says what the four frames leave of the target: with
// the frames at their cheapest (f, the unpaced floor: the processes
// saturated, many frames per system call) and at the target's pace (at,
// on an otherwise idle machine, each frame paying its own wake-up). A
// design at the floor on a saturated machine lies between the two.
func writeBoundBullet(p func(string, ...any), base SideResult, f, at *DispatchFloor, cpus int) {
	cheap, paced := f.framesCPU(), at.framesCPU()
	best, _ := ratioBound(base, cheap, cpus)
	worst, needed := ratioBound(base, paced, cpus)
	if best <= 0 {
		return
	}
	p("- what the four frames leave of the target: the baseline's own work is %.0f µs per job", needed-paced)
	p("  (broker, load generator, the relay's AMQP calls). With the frames at their cheapest (the")
	p("  unpaced floor, %.0f µs) %d cores allow at most %.2f× the baseline; with the frames as they", cheap, cpus, best)
	p("  cost at the target's pace (%.0f jobs/s%s) on an otherwise idle machine (%.0f µs) at most %.2f×.", at.Rate, burstNote(at), paced, worst)
	switch {
	case best < targetRatio:
		p("  **The %.1f× target is out of reach on this machine for any design that moves each job over", targetRatio)
		p("  grpc-go with these frames.**")
	case worst < targetRatio:
		p("  The %.1f× target is within reach only of a design whose frames cost close to the", targetRatio)
		p("  saturated floor's.")
	default:
		p("  The %.1f× target is within reach of a design at the floor.", targetRatio)
	}
}

// writeHubFloorBullet reports the real hub's drain with the dispatch
// floor's clients as its workers.
func writeHubFloorBullet(p func(string, ...any), h *SideResult, baseRate float64) {
	us := 1e6 / h.Throughput
	p("- the real hub with the floor's clients as its workers (the hub's own cost, with the")
	p("  cheapest workers): %.0f jobs/s = %.2f× the baseline; CPU per job: hub %.0f µs,", h.Throughput, h.Throughput/baseRate, h.DrainCPU["hub"]*us)
	p("  clients %.0f µs, broker %.0f µs (%s).", h.DrainCPU["workers"]*us, h.DrainCPU["broker"]*us, ledgerShort(h.DrainAccount))
}

// writeGRPCRelayBullet reports the gRPC relay's pairs: the contract's
// steps and nothing else, against the relay drained just before it.
func writeGRPCRelayBullet(p func(string, ...any), pairs []GRPCRelayPair) {
	ratios := make([]float64, len(pairs))
	strs := make([]string, len(pairs))
	for i, pr := range pairs {
		ratios[i] = pr.Ratio()
		strs[i] = fmt.Sprintf("%.2f×", ratios[i])
	}
	m := median(ratios)
	first := pairs[0].GRPCRelay
	us := 1e6 / first.Throughput
	p("- the relay with the contract's gRPC hop (`bench/grpcrelay.go`, inside btbench as the relay is: each")
	p("  job goes to one of the floor's clients as RunJob, its delivery is acked on JobAccepted, its")
	p("  status published on JobResult and ResultAck sent after the confirm; no job table, timers,")
	p("  logs or interceptors: the contract's steps, one job at a time, and nothing else), drained")
	p("  alternately with the relay:")
	of := "one pair"
	if len(pairs) > 1 {
		of = "the median of " + strings.Join(strs, ", ")
	}
	p("  **%.2f×** the relay (%s). First pair: %.0f against %.0f jobs/s; CPU per job:", m, of, first.Throughput, pairs[0].Relay.Throughput)
	p("  btbench (load generator, collector and this relay) %.0f µs, clients %.0f µs, broker %.0f µs (%s).",
		first.DrainCPU["btbench"]*us, first.DrainCPU["workers"]*us, first.DrainCPU["broker"]*us, ledgerShort(first.DrainAccount))
	if m < targetRatio {
		p("  Its median is below %.1f× too: taking the contract's steps one job at a time, with nothing", targetRatio)
		p("  else, already misses the target in this run.")
	}
}

// budget is, when both sides are CPU-bound, the CPU per job (µs) the hub
// and workers may use for Blacktree to reach ratio of the baseline's
// jobs/s: the baseline's total per job / ratio, less what Blacktree's side
// spends outside them (broker, collector). used is what they spent.
func budget(base, bt SideResult, ratio float64) (budget, used float64, ok bool) {
	if base.Throughput <= 0 || bt.Throughput <= 0 || base.DrainMachineBusy <= 0 || bt.DrainMachineBusy <= 0 {
		return 0, 0, false // no CPU measured: nothing to budget
	}
	n := float64(runtime.NumCPU())
	inside := bt.DrainCPU["hub"] + bt.DrainCPU["workers"]
	baseTotal := base.DrainMachineBusy * n * 1e6 / base.Throughput
	outside := (bt.DrainMachineBusy*n - inside) * 1e6 / bt.Throughput
	return baseTotal/ratio - outside, inside * 1e6 / bt.Throughput, true
}

func roles(m map[string]float64) string {
	return strings.Join(byRole(m, "%.0f%%", 100), ", ")
}

func (r *Report) dispatchWorkers() int {
	if r.DispatchConfig != nil {
		return r.DispatchConfig.Workers
	}
	return 0
}

func (r *Report) dispatchJobs() int {
	if r.DispatchConfig != nil {
		return r.DispatchConfig.Jobs
	}
	return 0
}
