package hub

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestBoundCacheSummary(t *testing.T) {
	many := func(n int, f func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	key := func(i int) string { return fmt.Sprintf("%032x", i) }
	for _, tc := range []struct {
		name        string
		in          *blacktreev1.CacheSummary
		wantKeys    []string
		wantImages  int
		wantTrimmed bool
	}{
		{name: "nil", in: nil},
		{name: "within bounds", in: &blacktreev1.CacheSummary{BuildKeys: []string{"a", "b"}, BaseImages: []string{"debian:12"}, SizeBytes: 7},
			wantKeys: []string{"a", "b"}, wantImages: 1},
		{name: "too many keys keeps the newest", in: &blacktreev1.CacheSummary{BuildKeys: many(100, key)},
			wantKeys: many(maxCacheEntries, key), wantTrimmed: true},
		{name: "too many images", in: &blacktreev1.CacheSummary{BaseImages: many(65, func(i int) string { return fmt.Sprintf("img%d:1", i) })},
			wantImages: maxCacheEntries, wantTrimmed: true},
		{name: "over-long, empty, invalid and repeated keys dropped",
			in:       &blacktreev1.CacheSummary{BuildKeys: []string{"a", strings.Repeat("k", maxBuildKeyLen+1), "", "\xff", "a", "b"}},
			wantKeys: []string{"a", "b"}, wantTrimmed: true},
		{name: "longest key kept", in: &blacktreev1.CacheSummary{BuildKeys: []string{strings.Repeat("k", maxBuildKeyLen)}},
			wantKeys: []string{strings.Repeat("k", maxBuildKeyLen)}},
		{name: "over-long image dropped", in: &blacktreev1.CacheSummary{BaseImages: []string{strings.Repeat("i", maxBaseImageLen+1), "busybox:1"}},
			wantImages: 1, wantTrimmed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, trimmed := boundCacheSummary(tc.in)
			if !slices.Equal(got.keys, tc.wantKeys) {
				t.Errorf("boundCacheSummary() keys = %v, want %v", got.keys, tc.wantKeys)
			}
			if len(got.images) != tc.wantImages {
				t.Errorf("boundCacheSummary() images = %d, want %d", len(got.images), tc.wantImages)
			}
			if trimmed != tc.wantTrimmed {
				t.Errorf("boundCacheSummary() trimmed = %v, want %v", trimmed, tc.wantTrimmed)
			}
			if got.bytes != tc.in.GetSizeBytes() {
				t.Errorf("boundCacheSummary() bytes = %d, want %d", got.bytes, tc.in.GetSizeBytes())
			}
		})
	}
}

// The manager's side of cache-aware placement: a free warm worker first,
// a cold one at once when the warm one is busy (or, when asked to wait,
// none), and the index follows summaries, sessions and deaths.
func TestManagerPickWarm(t *testing.T) {
	m := newWorkerManager(Config{HeartbeatInterval: time.Hour, MissedHeartbeats: 3, DeadRetention: time.Hour}, hclog.NewNullLogger())
	defer m.close()
	warm := testWorker("warm", 1, map[string]string{"arch": "amd64"})
	cold := testWorker("cold", 1, map[string]string{"arch": "amd64"})
	m.register(warm, false, ignoreInterval)
	m.register(cold, false, ignoreInterval) // the newest idle: picked first without caches
	m.setCache(warm, cacheSummary{keys: []string{"other", "k1"}, bytes: 100})
	m.setCache(cold, cacheSummary{keys: []string{"other"}, bytes: 20})
	if got := m.cacheBytes(); got != 120 {
		t.Errorf("cacheBytes() = %d, want 120", got)
	}
	pick := func(req pickRequest) (id string, warm, waiting bool) {
		t.Helper()
		r := m.pick(req)
		if r.w != nil {
			id = r.w.id
			m.release(r.w, req.jobID)
		}
		return id, r.warm, r.waiting
	}
	for _, tc := range []struct {
		name        string
		req         pickRequest
		wantID      string
		wantWarm    bool
		wantWaiting bool
	}{
		{name: "affinity off: the newest idle", req: pickRequest{jobID: "j", cacheKey: "k1"}, wantID: "cold"},
		{name: "warm first", req: pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true}, wantID: "warm", wantWarm: true},
		{name: "warm with labels", req: pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true, labels: map[string]string{"arch": "amd64"}},
			wantID: "warm", wantWarm: true},
		{name: "warm one excluded", req: pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true, exclude: map[string]bool{"warm": true}},
			wantID: "cold"},
		{name: "unknown key: the newest idle", req: pickRequest{jobID: "j", cacheKey: "k9", preferWarm: true}, wantID: "cold"},
		{name: "labels match no warm worker", req: pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true, labels: map[string]string{"arch": "arm64"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, w, waiting := pick(tc.req)
			if id != tc.wantID || w != tc.wantWarm || waiting != tc.wantWaiting {
				t.Errorf("pick(%+v) = %q warm=%v waiting=%v, want %q warm=%v waiting=%v", tc.req, id, w, waiting, tc.wantID, tc.wantWarm, tc.wantWaiting)
			}
		})
	}

	// The warm worker busy: a cold one at once, or none when waiting for
	// a warm one.
	if !m.hold(warm, "running") {
		t.Fatal("hold(warm) = false")
	}
	if id, w, _ := pick(pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true}); id != "cold" || w {
		t.Errorf("pick with the warm worker busy = %q warm=%v, want cold at once", id, w)
	}
	if id, _, waiting := pick(pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true, waitForWarm: true}); id != "" || !waiting {
		t.Errorf("pick waiting for warm with it busy = %q waiting=%v, want none, waiting", id, waiting)
	}
	// A worker draining is not waited for.
	m.setDraining(warm, true)
	if id, _, waiting := pick(pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true, waitForWarm: true}); id != "cold" || waiting {
		t.Errorf("pick waiting for a draining warm worker = %q waiting=%v, want cold", id, waiting)
	}
	m.setDraining(warm, false)
	m.release(warm, "running")

	// A new summary replaces the keys; a dead worker leaves the index.
	m.setCache(cold, cacheSummary{keys: []string{"k1"}, bytes: 30})
	m.setCache(warm, cacheSummary{keys: []string{"k2"}, bytes: 100})
	if id, w, _ := pick(pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true}); id != "cold" || !w {
		t.Errorf("pick after the summaries changed = %q warm=%v, want cold (now warm)", id, w)
	}
	m.gone(cold, ErrStreamClosed)
	if id, w, _ := pick(pickRequest{jobID: "j", cacheKey: "k1", preferWarm: true}); id != "warm" || w {
		t.Errorf("pick after the warm worker died = %q warm=%v, want warm (cold for k1)", id, w)
	}
	if got := m.cacheBytes(); got != 100 {
		t.Errorf("cacheBytes() after a death = %d, want 100", got)
	}
	if len(m.warm.holders["k1"].GetList()) != 0 || len(m.warm.free["k1"].GetList()) != 0 {
		t.Errorf("warm index still files a dead worker under k1")
	}
}

// GetList is the set's entries; nil-safe, for tests.
func (s *entrySet) GetList() []*workerEntry {
	if s == nil {
		return nil
	}
	return s.list
}

// BenchmarkPickWarm is BenchmarkPick's fleet with caches: each of 10,000
// 8-slot workers reports 64 build keys, and a job's key is held by 100 of
// them (half of those partly busy): one pick of a warm worker and the
// release that undoes it.
//
//	go test -run xxx -bench PickWarm ./hub/
func BenchmarkPickWarm(b *testing.B) {
	const workers, slots, holders = 10000, 8, 100
	m := newWorkerManager(Config{HeartbeatInterval: time.Hour, MissedHeartbeats: 3, DeadRetention: time.Hour}, hclog.NewNullLogger())
	defer m.close()
	for i := range workers {
		w := testWorker(fmt.Sprintf("w%05d", i), slots, nil)
		m.register(w, false, ignoreInterval)
		keys := make([]string, 0, maxCacheEntries)
		if i%(workers/holders) == 0 {
			keys = append(keys, "hot")
		}
		for k := len(keys); k < maxCacheEntries; k++ {
			keys = append(keys, fmt.Sprintf("%d-%d", i, k))
		}
		m.setCache(w, cacheSummary{keys: keys})
		if i%2 == 0 {
			m.hold(w, "running")
		}
	}
	b.ResetTimer()
	for b.Loop() {
		r := m.pick(pickRequest{jobID: "job", cacheKey: "hot", preferWarm: true})
		if !r.warm {
			b.Fatal("pick() not warm, want a warm worker")
		}
		m.release(r.w, "job")
	}
}
