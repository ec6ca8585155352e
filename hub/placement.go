package hub

import (
	"fmt"

	"github.com/blacktree/blacktree/internal/jobspec"
)

// Placement is how the hub chooses among the free workers that can take a
// job (Config.Placement). Both only ever pick a worker with a free slot
// whose labels match.
type Placement int

const (
	// PlacementSpread (the default) gives a job to the least-loaded worker
	// (running jobs / slots): builds share the fleet's machines evenly,
	// each with as much of its machine as the fleet allows.
	PlacementSpread Placement = iota
	// PlacementBinpack gives a job to the most-loaded worker that still
	// has a free slot, and to an idle one only when none has: the fleet's
	// work gathers on as few machines as possible, so the rest stay idle
	// (an autoscaler can remove them), and a busy worker's frames travel
	// together, which costs the hub and the workers fewer system calls per
	// job (docs/design/dispatch-throughput.md). Nomad's "binpack" scheduler is the
	// same idea.
	PlacementBinpack
)

// String returns the flag spelling: "spread" or "binpack".
func (p Placement) String() string {
	switch p {
	case PlacementSpread:
		return "spread"
	case PlacementBinpack:
		return "binpack"
	}
	return fmt.Sprintf("Placement(%d)", int(p))
}

// ParsePlacement reads the flag spelling of a Placement.
func ParsePlacement(s string) (Placement, error) {
	switch s {
	case "spread":
		return PlacementSpread, nil
	case "binpack":
		return PlacementBinpack, nil
	}
	return 0, fmt.Errorf("unknown placement %q: want spread or binpack", s)
}

// valid reports whether p is one of the placements above.
func (p Placement) valid() bool { return p == PlacementSpread || p == PlacementBinpack }

// MarshalText writes the flag spelling (flag.TextVar, JSON).
func (p Placement) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("unknown %v", p)
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads the flag spelling.
func (p *Placement) UnmarshalText(b []byte) error {
	v, err := ParsePlacement(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// pickRequest is what pick needs to know of a job.
type pickRequest struct {
	jobID   string
	labels  map[string]string // workerLabels: each must be among the worker's
	exclude map[string]bool   // worker ids not to offer it to
	// cacheKey is the job's build key (jobspec.CacheKey); "" for none.
	cacheKey string
	// preferWarm: a free worker whose cache holds cacheKey comes first.
	preferWarm bool
	// waitForWarm: when no free worker holds cacheKey but a busy one
	// does, pick no cold worker (Config.AffinityWait).
	waitForWarm bool
}

// pickResult is where pick placed a job.
type pickResult struct {
	w *Worker // nil when no worker took it
	// warm: w's cache holds the job's build key.
	warm bool
	// waiting: w is nil because a busy worker holds the key and the
	// request asked to wait for one.
	waiting bool
}

// pick reserves a slot for a job on a free worker whose labels include
// every wanted label, skipping the excluded ids. With preferWarm it first
// looks for one whose cache holds the job's build key (the least loaded
// of them, or with PlacementBinpack the most loaded); otherwise, or when
// none is free, the least loaded worker, or with PlacementBinpack the most
// loaded one.
func (m *WorkerManager) pick(req pickRequest) pickResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	ok := func(e *workerEntry) bool { return !req.exclude[e.w.id] && jobspec.LabelsMatch(req.labels, e.w.labels) }
	var best *workerEntry
	if req.preferWarm && req.cacheKey != "" {
		best = m.warm.bestFree(req.cacheKey, m.placement == PlacementBinpack, ok)
		if best == nil && req.waitForWarm && m.warm.busyHolder(req.cacheKey, ok) {
			return pickResult{waiting: true}
		}
	}
	if best == nil {
		best = m.pickAnyLocked(ok)
	}
	if best == nil {
		return pickResult{}
	}
	warm := best.cache.holds(req.cacheKey)
	best.jobs[req.jobID] = struct{}{}
	m.indexLocked(best)
	return pickResult{w: best.w, warm: warm}
}

// pickAnyLocked returns the free entry ok accepts that the placement puts
// first, or nil.
func (m *WorkerManager) pickAnyLocked(ok func(*workerEntry) bool) *workerEntry {
	if m.placement == PlacementBinpack {
		if best := m.partial.best(true, ok); best != nil {
			return best
		}
		return m.idle.newestMatch(ok)
	}
	// Any idle match is least loaded (load 0): take the one that became
	// idle last (entrylist.go); usually the first one looked at.
	if best := m.idle.newestMatch(ok); best != nil {
		return best
	}
	return m.partial.best(false, ok)
}
