package builds

import (
	"fmt"
	"time"
)

// Sides and kinds of a Build.
const (
	SideBlacktree = "blacktree"
	SideHand      = "hand-run"

	KindCold    = "cold"    // nothing of the Dockerfile is cached anywhere
	KindWarm    = "warm"    // after a one-file change COPY'd last
	KindFirst   = "first"   // a fleet repository's first build (not measured)
	KindRebuild = "rebuild" // a fleet round's change-then-rebuild
)

// Build is one timed build: for Blacktree from the JobRequest's publish
// to its JobResponse on the status queue, for the hand-run from the start
// of `git clone` to the end of `docker push`.
type Build struct {
	Round   int     `json:"round"`
	Side    string  `json:"side"`
	Kind    string  `json:"kind"`
	Repo    string  `json:"repo"`
	Seconds float64 `json:"seconds"`
	// Worker is the worker that ran a Blacktree build (from its log).
	Worker      string `json:"worker,omitempty"`
	CachedSteps uint32 `json:"cachedSteps"`
	TotalSteps  uint32 `json:"totalSteps"`
}

// Duration is the build's time to image.
func (b Build) Duration() time.Duration { return time.Duration(b.Seconds * float64(time.Second)) }

// FleetMode is one placement mode's fleet run.
type FleetMode struct {
	// Mode is "affinity" or "spread".
	Mode string `json:"mode"`
	// HubFlags are the placement flags the hub ran with.
	HubFlags []string `json:"hubFlags"`
	Builds   []Build  `json:"builds"`
}

// Setup is what the run ran with.
type Setup struct {
	Engine        string `json:"engine"`
	WorkerBuilder string `json:"workerBuilder"`
	// WorkerArgs are the workers' extra arguments (Config.WorkerArgs).
	WorkerArgs  []string `json:"workerArgs,omitempty"`
	HandBuilder string   `json:"handBuilder"`
	// HubAffinityFlag says whether the hub has --cache-affinity; without
	// it both fleet modes run the hub's only placement.
	HubAffinityFlag bool    `json:"hubAffinityFlag"`
	FleetWorkers    int     `json:"fleetWorkers"`
	FleetRepos      int     `json:"fleetRepos"`
	FleetRounds     int     `json:"fleetRounds"`
	Rounds          int     `json:"rounds"`
	Dockerfile      string  `json:"dockerfile"`
	DepsSleep       float64 `json:"depsSleepSeconds"`
}

// Result is one run of the benchmark; the JSON output and the Markdown
// report are both made from it.
type Result struct {
	Command        string      `json:"command"`
	Started        time.Time   `json:"started"`
	ElapsedSeconds float64     `json:"elapsedSeconds"`
	Host           string      `json:"host"`
	Setup          Setup       `json:"setup"`
	Rebuild        []Build     `json:"rebuild"`
	Fleet          []FleetMode `json:"fleet"`
	Errors         []string    `json:"errors,omitempty"`
}

// pick returns the builds of one side and kind.
func pick(builds []Build, side, kind string) []Build {
	var out []Build
	for _, b := range builds {
		if b.Side == side && b.Kind == kind {
			out = append(out, b)
		}
	}
	return out
}

func durations(builds []Build) []time.Duration {
	out := make([]time.Duration, len(builds))
	for i, b := range builds {
		out[i] = b.Duration()
	}
	return out
}

// Spread summarises a set of times to image.
type Spread struct {
	N           int
	Median, P90 time.Duration
}

func spreadOf(builds []Build) Spread {
	d := durations(builds)
	return Spread{N: len(d), Median: quantile(d, 50), P90: quantile(d, 90)}
}

// RebuildSummary is the rebuild scenario's medians.
type RebuildSummary struct {
	BlacktreeCold, BlacktreeWarm, HandCold, HandWarm Spread
	// WarmHits is the cache use of Blacktree's warm builds.
	WarmHits CacheHits
}

// RebuildSummary summarises r.Rebuild.
func (r *Result) RebuildSummary() RebuildSummary {
	return RebuildSummary{
		BlacktreeCold: spreadOf(pick(r.Rebuild, SideBlacktree, KindCold)),
		BlacktreeWarm: spreadOf(pick(r.Rebuild, SideBlacktree, KindWarm)),
		HandCold:      spreadOf(pick(r.Rebuild, SideHand, KindCold)),
		HandWarm:      spreadOf(pick(r.Rebuild, SideHand, KindWarm)),
		WarmHits:      countHits(pick(r.Rebuild, SideBlacktree, KindWarm)),
	}
}

// FleetSummary is one mode's measured rebuilds.
type FleetSummary struct {
	Mode string
	Spread
	Hits CacheHits
	// WorkersPerRepo is the mean number of distinct workers that built
	// each repository over the measured rounds (1: it stayed on one).
	WorkersPerRepo float64
}

// Summary summarises the mode's measured rebuilds.
func (m FleetMode) Summary() FleetSummary {
	rebuilds := pick(m.Builds, SideBlacktree, KindRebuild)
	workers := map[string]map[string]bool{}
	for _, b := range rebuilds {
		if workers[b.Repo] == nil {
			workers[b.Repo] = map[string]bool{}
		}
		if b.Worker != "" {
			workers[b.Repo][b.Worker] = true
		}
	}
	perRepo := 0.0
	for _, w := range workers {
		perRepo += float64(len(w))
	}
	if len(workers) > 0 {
		perRepo /= float64(len(workers))
	}
	return FleetSummary{Mode: m.Mode, Spread: spreadOf(rebuilds), Hits: countHits(rebuilds), WorkersPerRepo: perRepo}
}

// fleetMode returns the named mode's run, if any.
func (r *Result) fleetMode(name string) (FleetMode, bool) {
	for _, m := range r.Fleet {
		if m.Mode == name {
			return m, true
		}
	}
	return FleetMode{}, false
}

// Target is one of the benchmark's targets as measured.
type Target struct {
	Name     string
	Measured string
	Limit    string
	// Met is "yes", "no", or "n/a" when the run did not measure it.
	Met string
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// Targets checks the run against the benchmark's four targets.
func (r *Result) Targets() []Target {
	s := r.RebuildSummary()
	warm := Target{Name: "warm rebuild ≤ 1.3 × hand-run warm + 0.5 s", Met: "n/a"}
	if s.BlacktreeWarm.N > 0 && s.HandWarm.N > 0 {
		limit := time.Duration(1.3*float64(s.HandWarm.Median)) + 500*time.Millisecond
		warm.Measured = secs(s.BlacktreeWarm.Median)
		warm.Limit = secs(limit)
		warm.Met = met(s.BlacktreeWarm.Median <= limit)
	}
	cold := Target{Name: "cold build ≤ 1.1 × hand-run cold", Met: "n/a"}
	if s.BlacktreeCold.N > 0 && s.HandCold.N > 0 {
		limit := time.Duration(1.1 * float64(s.HandCold.Median))
		cold.Measured = secs(s.BlacktreeCold.Median)
		cold.Limit = secs(limit)
		cold.Met = met(s.BlacktreeCold.Median <= limit)
	}
	hit := Target{Name: "fleet cache hit rate with affinity ≥ 90%", Limit: "90%", Met: "n/a"}
	aff, okA := r.fleetMode("affinity")
	if okA {
		if h := aff.Summary().Hits; h.Known() {
			hit.Measured = fmt.Sprintf("%.0f%%", 100*h.Rate())
			hit.Met = met(h.Rate() >= 0.9)
		} else {
			hit.Measured = "n/a (the executor reports no steps)"
		}
	}
	speed := Target{Name: "fleet median: spread ÷ affinity ≥ 3", Limit: "3.00", Met: "n/a"}
	spr, okS := r.fleetMode("spread")
	if okA && okS {
		a, sp := aff.Summary(), spr.Summary()
		if a.N > 0 && sp.N > 0 {
			x := ratio(sp.Median, a.Median)
			speed.Measured = fmt.Sprintf("%.2f (%s ÷ %s)", x, secs(sp.Median), secs(a.Median))
			speed.Met = met(x >= 3)
		}
	}
	return []Target{warm, cold, hit, speed}
}
