package hub

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// testWorker is a Worker with no stream, for WorkerManager tests.
func testWorker(id string, slots int, labels map[string]string) *Worker {
	return &Worker{id: id, slots: slots, labels: labels, done: make(chan struct{}), wg: &sync.WaitGroup{}, log: hclog.NewNullLogger(),
		maxQueue: 8}
}

// ignoreInterval stands in for the Registered frame register queues.
func ignoreInterval(time.Duration) {}

// Among idle workers pick takes the one that became idle last (warm
// caches, a hot connection), whatever their ids or registration order.
func TestManagerPickNewestIdle(t *testing.T) {
	m := newWorkerManager(Config{HeartbeatInterval: time.Hour, MissedHeartbeats: 3, DeadRetention: time.Hour}, hclog.NewNullLogger())
	defer m.close()
	ws := map[string]*Worker{}
	for _, id := range []string{"a", "b", "c", "d"} {
		ws[id] = testWorker(id, 1, nil)
		m.register(ws[id], false, ignoreInterval)
	}
	for _, id := range []string{"c", "a", "d", "b"} { // busy, then freed in this order
		m.hold(ws[id], "j-"+id)
	}
	for _, id := range []string{"c", "a", "d", "b"} {
		m.release(ws[id], "j-"+id)
	}
	for _, want := range []string{"b", "d", "a", "c"} {
		if got := m.pick(pickRequest{jobID: "next-" + want}).w; got == nil || got.id != want {
			t.Fatalf("pick() = %v, want %s (most recently idle first)", got, want)
		}
	}
	if got := m.pick(pickRequest{jobID: "none-left"}).w; got != nil {
		t.Errorf("pick() with every worker busy = %s, want nil", got.id)
	}
}

// pick honours labels, capacity, exclusions and prefers the least loaded.
func TestManagerPick(t *testing.T) {
	m := newWorkerManager(Config{HeartbeatInterval: time.Hour, MissedHeartbeats: 3, DeadRetention: time.Hour}, hclog.NewNullLogger())
	defer m.close()
	big := testWorker("big", 4, map[string]string{"arch": "amd64"})
	small := testWorker("small", 1, map[string]string{"arch": "amd64"})
	arm := testWorker("arm", 1, map[string]string{"arch": "arm64"})
	for _, w := range []*Worker{big, small, arm} {
		m.register(w, false, ignoreInterval)
	}
	m.hold(big, "existing") // big: 1/4, small: 0/1
	for _, tc := range []struct {
		name    string
		job     string
		want    map[string]string
		exclude map[string]bool
		wantID  string
	}{
		{name: "labels", job: "j1", want: map[string]string{"arch": "arm64"}, wantID: "arm"},
		{name: "labels exhausted", job: "j2", want: map[string]string{"arch": "arm64"}, wantID: ""},
		{name: "least loaded", job: "j3", want: map[string]string{"arch": "amd64"}, wantID: "small"},
		{name: "small busy", job: "j4", wantID: "big"},
		{name: "excluded", job: "j5", exclude: map[string]bool{"big": true}, wantID: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if w := m.pick(pickRequest{jobID: tc.job, labels: tc.want, exclude: tc.exclude}).w; w != nil {
				got = w.id
			}
			if got != tc.wantID {
				t.Errorf("pick(%s) = %q, want %q", tc.job, got, tc.wantID)
			}
		})
	}
	if got := m.countByState(); got[StateBusy] != 2 || got[StateFree] != 1 {
		t.Errorf("countByState() = %v, want 2 busy (small, arm), 1 free (big)", got)
	}
}

// With PlacementBinpack, pick fills the most loaded worker with a free slot
// first and starts an idle one only when every partly busy match is full.
func TestManagerPickBinpack(t *testing.T) {
	m := newWorkerManager(Config{HeartbeatInterval: time.Hour, MissedHeartbeats: 3, DeadRetention: time.Hour,
		Placement: PlacementBinpack}, hclog.NewNullLogger())
	defer m.close()
	a := testWorker("a", 2, nil)
	b := testWorker("b", 4, nil)
	c := testWorker("c", 4, map[string]string{"arch": "arm64"})
	for _, w := range []*Worker{a, b, c} {
		m.register(w, false, ignoreInterval)
	}
	m.hold(a, "existing") // a: 1/2, b: 0/4, c: 0/4
	for _, tc := range []struct {
		name    string
		want    map[string]string
		exclude map[string]bool
		wantID  string
	}{
		{name: "most loaded first", wantID: "a"},                             // a 2/2 full
		{name: "idle only when no partial", wantID: "c"},                     // newest idle; c 1/4
		{name: "then the partial one", wantID: "c"},                          // c 2/4
		{name: "excluded", exclude: map[string]bool{"c": true}, wantID: "b"}, // b 1/4
		{name: "higher load wins", wantID: "c"},                              // c 3/4 over b 1/4
		{name: "labels", want: map[string]string{"arch": "amd64"}, wantID: ""},
		{name: "fills c", wantID: "c"}, // c 4/4
		{name: "then b", wantID: "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if w := m.pick(pickRequest{jobID: "job-" + tc.name, labels: tc.want, exclude: tc.exclude}).w; w != nil {
				got = w.id
			}
			if got != tc.wantID {
				t.Errorf("pick() = %q, want %q", got, tc.wantID)
			}
		})
	}
}

// The free-worker index stays equal to a scan of every worker through any
// sequence of changes, and pick takes the least (spread) or most (binpack)
// loaded free worker that a scan finds.
func TestManagerFreeIndex(t *testing.T) {
	for _, p := range []Placement{PlacementSpread, PlacementBinpack} {
		t.Run(p.String(), func(t *testing.T) { testManagerFreeIndex(t, p) })
	}
}

func testManagerFreeIndex(t *testing.T, placement Placement) {
	m := newWorkerManager(Config{HeartbeatInterval: time.Hour, MissedHeartbeats: 3, DeadRetention: time.Hour, Placement: placement},
		hclog.NewNullLogger())
	defer m.close()
	var ws []*Worker
	for i := 0; i < 12; i++ {
		ws = append(ws, testWorker(fmt.Sprintf("w%d", i), []int{1, 3, 3, 4}[i%4], nil))
		m.register(ws[i], false, ignoreInterval)
	}
	var stale []*Worker // sessions replaced by a re-register
	check := func(step string) {
		t.Helper()
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range stale {
			if e := m.currentLocked(s); e != nil {
				t.Fatalf("after %s: currentLocked(replaced session of %s) = entry, want nil", step, s.id)
			}
		}
		n := 0
		for id, e := range m.workers {
			if !e.current || e.w.entry != e || e.w.id != id {
				t.Fatalf("after %s: m.workers[%s]: current=%v, its worker's entry is it: %v", step, id, e.current, e.w.entry == e)
			}
			if got := m.currentLocked(e.w); got != e && !e.dead {
				t.Fatalf("after %s: currentLocked(%s) is not its live entry", step, id)
			}
			idle := m.idle.has(e)
			partial := m.partial.has(e)
			free := e.stateLocked() == StateFree
			if free {
				n++
			}
			if idle != (free && len(e.jobs) == 0) || partial != (free && len(e.jobs) > 0) {
				t.Fatalf("after %s: %s state %v jobs %d: idle=%v partial=%v", step, e.w.id, e.stateLocked(), len(e.jobs), idle, partial)
			}
		}
		lists := []*entryList{&m.idle}
		for _, g := range m.partial.groups {
			if !slices.IsSorted(g.jobs) {
				t.Fatalf("after %s: slot group %d: job counts %v not sorted", step, g.slots, g.jobs)
			}
			for j, l := range g.byJobs {
				if l.slots != g.slots || l.jobs != j {
					t.Fatalf("after %s: slot group %d: bucket for %d jobs labelled %d/%d", step, g.slots, j, l.jobs, l.slots)
				}
				if _, listed := slices.BinarySearch(g.jobs, j); listed != (l.len() > 0) {
					t.Fatalf("after %s: slot group %d: bucket for %d jobs holds %d entries, listed %v", step, g.slots, j, l.len(), listed)
				}
				lists = append(lists, l)
			}
		}
		inBuckets := 0
		for _, l := range lists {
			walked := 0
			for e := l.head; e != nil; e = e.next {
				if e.list != l || (e.next != nil && e.next.prev != e) {
					t.Fatalf("after %s: list links broken at %s", step, e.w.id)
				}
				walked++
			}
			if walked != l.len() {
				t.Fatalf("after %s: a list walks %d entries, len() = %d", step, walked, l.len())
			}
			if l != &m.idle {
				inBuckets += walked
			}
		}
		if inBuckets != m.partial.len() {
			t.Fatalf("after %s: load index buckets hold %d entries, len() = %d", step, inBuckets, m.partial.len())
		}
		if m.idle.len()+m.partial.len() != n {
			t.Fatalf("after %s: index holds %d entries, want %d free", step, m.idle.len()+m.partial.len(), n)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		w := ws[rng.IntN(len(ws))]
		job := fmt.Sprintf("j%d", rng.IntN(8))
		var step string
		switch rng.IntN(9) {
		case 0:
			exclude := map[string]bool{} // as after rejections, or labels that do not match
			for _, w := range ws {
				if rng.IntN(3) == 0 {
					exclude[w.id] = true
				}
			}
			loads, want := scanPick(m, placement, exclude)
			got := m.pick(pickRequest{jobID: job, exclude: exclude}).w
			switch {
			case want == nil && got != nil:
				t.Fatalf("step %d: pick() = %s, want nil (no free worker)", i, got.id)
			case want != nil && got == nil:
				t.Fatalf("step %d: pick() = nil, want a worker with load %v", i, *want)
			case got != nil && !sameRank(placement, loads[got], *want):
				t.Fatalf("step %d: pick() = %s with load %v, want load %v (scan)", i, got.id, loads[got], *want)
			}
			step = "pick"
		case 1:
			m.hold(w, job)
			step = "hold"
		case 2, 3:
			m.release(w, job)
			step = "release"
		case 4:
			m.setDraining(w, rng.IntN(2) == 0)
			step = "setDraining"
		case 5:
			m.gone(w, errors.New("gone"))
			step = "gone"
		case 7:
			m.heartbeat(w, rng.IntN(2) == 0)
			if len(stale) > 0 { // a late frame of a replaced session changes nothing
				m.heartbeat(stale[rng.IntN(len(stale))], rng.IntN(2) == 0)
			}
			step = "heartbeat"
		case 8:
			m.reap(w) // removes w only when dead
			step = "reap"
		case 6:
			nw := testWorker(w.id, w.slots, nil)
			m.register(nw, false, ignoreInterval)
			stale = append(stale, w)
			for k := range ws {
				if ws[k] == w {
					ws[k] = nw
				}
			}
			step = "re-register"
		}
		check(fmt.Sprintf("step %d (%s %s)", i, step, w.id))
	}
}

// workerLoad is what placement orders free workers by.
type workerLoad struct{ jobs, slots int }

// ahead reports whether placement puts a worker with load a before one
// with load b: spread by jobs/slots then jobs, ascending; binpack
// descending, idle workers last.
func ahead(placement Placement, a, b workerLoad) bool {
	if placement == PlacementBinpack && (a.jobs == 0) != (b.jobs == 0) {
		return b.jobs == 0
	}
	ra, rb := a.jobs*b.slots, b.jobs*a.slots
	if ra == rb {
		ra, rb = a.jobs, b.jobs
	}
	if placement == PlacementBinpack {
		return ra > rb
	}
	return ra < rb
}

func sameRank(placement Placement, a, b workerLoad) bool {
	return !ahead(placement, a, b) && !ahead(placement, b, a)
}

// scanPick scans every worker: it returns each current worker's load, and
// the load pick must choose (nil when no worker but the excluded is free).
func scanPick(m *WorkerManager, placement Placement, exclude map[string]bool) (map[*Worker]workerLoad, *workerLoad) {
	m.mu.Lock()
	defer m.mu.Unlock()
	loads := map[*Worker]workerLoad{}
	var best *workerLoad
	for _, e := range m.workers {
		if !e.current {
			continue
		}
		l := workerLoad{len(e.jobs), e.w.slots}
		loads[e.w] = l
		if e.stateLocked() == StateFree && !exclude[e.w.id] && (best == nil || ahead(placement, l, *best)) {
			best = &l
		}
	}
	return loads, best
}

// BenchmarkPick measures one pick (and the release that undoes it) in a
// fleet of 10,000 8-slot workers: with an idle worker available, and with
// every worker partly busy (each running 1–7 jobs), under both placements.
// The partly busy fleet is the case pick scans (hub/placement.go).
//
//	go test -run xxx -bench BenchmarkPick -benchtime 2000x ./hub/
func BenchmarkPick(b *testing.B) {
	const workers, slots = 10000, 8
	for _, p := range []Placement{PlacementSpread, PlacementBinpack} {
		for _, busy := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/partly_busy=%v", p, busy), func(b *testing.B) {
				m := newWorkerManager(Config{HeartbeatInterval: time.Hour, MissedHeartbeats: 3, DeadRetention: time.Hour, Placement: p},
					hclog.NewNullLogger())
				defer m.close()
				ws := make([]*Worker, workers)
				for i := range ws {
					ws[i] = testWorker(fmt.Sprintf("w%05d", i), slots, nil)
					m.register(ws[i], false, ignoreInterval)
					if busy {
						for j := range 1 + i%(slots-1) {
							m.hold(ws[i], fmt.Sprintf("running-%d-%d", i, j))
						}
					}
				}
				b.ResetTimer()
				for b.Loop() {
					w := m.pick(pickRequest{jobID: "job"}).w
					if w == nil {
						b.Fatal("pick() = nil, want a worker")
					}
					m.release(w, "job")
				}
			})
		}
	}
}
