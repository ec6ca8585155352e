package hub

import "slices"

// loadIndex holds the partly busy workers (free, with some jobs) by load,
// so that pick finds the least or the most loaded match without scanning
// them all: with 10,000 8-slot workers each running a few jobs, the scan
// cost 2–4 ms per job under the manager's lock, which every heartbeat also
// takes (BenchmarkPick; docs/design/dispatch-throughput.md).
//
// Entries are bucketed by their slot count, then by their number of jobs.
// A bucket is an entryList, newest arrival last: among equally loaded
// workers pick takes the one whose load changed last. Groups and buckets
// are made when first needed and kept when they empty (a pick and the
// release after it would otherwise make and drop one each time), so memory
// follows the slot counts and loads that occurred, not the slots workers
// claim (at most 4096, maxSlots). Guarded by WorkerManager.mu.
type loadIndex struct {
	groups []*slotGroup // by slots, ascending
	n      int
}

// slotGroup holds the partly busy workers with the same slot count.
type slotGroup struct {
	slots  int
	jobs   []int              // job counts whose bucket is not empty, ascending
	byJobs map[int]*entryList // buckets made so far, empty ones included
}

func (x *loadIndex) len() int { return x.n }

// group returns the group for slots, adding it if missing.
func (x *loadIndex) group(slots int) *slotGroup {
	i, found := slices.BinarySearchFunc(x.groups, slots, func(g *slotGroup, s int) int { return g.slots - s })
	if !found {
		x.groups = slices.Insert(x.groups, i, &slotGroup{slots: slots, byJobs: map[int]*entryList{}})
	}
	return x.groups[i]
}

// has reports whether e is filed, in the bucket for its load now.
func (x *loadIndex) has(e *workerEntry) bool {
	l := e.list
	return l != nil && l.slots == e.w.slots && l.jobs == len(e.jobs) && len(e.jobs) > 0 && len(e.jobs) < e.w.slots
}

// file puts e in the bucket for its current load (1 ≤ jobs < slots). An
// entry whose load did not change keeps its place.
func (x *loadIndex) file(e *workerEntry) {
	if x.has(e) {
		return
	}
	x.remove(e)
	g := x.group(e.w.slots)
	j := len(e.jobs)
	l := g.byJobs[j]
	if l == nil {
		l = &entryList{slots: g.slots, jobs: j}
		g.byJobs[j] = l
	}
	if l.len() == 0 {
		k, _ := slices.BinarySearch(g.jobs, j)
		g.jobs = slices.Insert(g.jobs, k, j)
	}
	l.pushBack(e)
	x.n++
}

// remove takes e out of the index, if it is in it.
func (x *loadIndex) remove(e *workerEntry) {
	l := e.list
	if l == nil || l.slots == 0 {
		return // in no list, or in the idle list
	}
	l.remove(e)
	x.n--
	if l.len() == 0 {
		g := x.group(l.slots)
		if k, ok := slices.BinarySearch(g.jobs, l.jobs); ok {
			g.jobs = slices.Delete(g.jobs, k, k+1)
		}
	}
}

// best returns the least loaded entry ok accepts (jobs/slots, then fewer
// jobs), or with most the most loaded one (then more jobs); nil if none.
// It merges the slot groups' buckets in load order and stops at the first
// match, so with no labels or exclusions it looks at one entry.
func (x *loadIndex) best(most bool, ok func(*workerEntry) bool) *workerEntry {
	// cur[i] is the position in groups[i].jobs of the group's next bucket;
	// out of range when the group is done.
	cur := make([]int, len(x.groups))
	step := 1
	if most {
		step = -1
		for i, g := range x.groups {
			cur[i] = len(g.jobs) - 1
		}
	}
	for {
		pick := -1
		for i, c := range cur {
			if c < 0 || c >= len(x.groups[i].jobs) {
				continue
			}
			if pick < 0 || x.before(i, pick, cur, most) {
				pick = i
			}
		}
		if pick < 0 {
			return nil
		}
		g := x.groups[pick]
		if e := g.byJobs[g.jobs[cur[pick]]].newestMatch(ok); e != nil {
			return e
		}
		cur[pick] += step
	}
}

// before orders group a's next bucket ahead of group b's: lower load
// ratio, then fewer jobs; reversed when most.
func (x *loadIndex) before(a, b int, cur []int, most bool) bool {
	ga, gb := x.groups[a], x.groups[b]
	return loadAhead(ga.jobs[cur[a]], ga.slots, gb.jobs[cur[b]], gb.slots, most)
}

// loadAhead orders a load of ja jobs on sa slots ahead of jb on sb: a
// lower ratio, then fewer jobs; reversed when most.
func loadAhead(ja, sa, jb, sb int, most bool) bool {
	ra, rb := ja*sb, jb*sa // ja/sa against jb/sb
	if ra == rb {
		ra, rb = ja, jb
	}
	if most {
		return ra > rb
	}
	return ra < rb
}
