package hub

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// warmFor is a cache summary that holds the build key of validJob's jobs.
func warmFor(sizeBytes uint64) *blacktreev1.CacheSummary {
	return &blacktreev1.CacheSummary{BuildKeys: []string{"0123456789abcdef0123456789abcdef", jobspec.CacheKey(validJob("any"))},
		BaseImages: []string{"local/busybox:1"}, SizeBytes: sizeBytes}
}

// Through the real broker and gRPC: a job goes to the free worker whose
// cache holds its build key (told in Register, or later in a Heartbeat),
// not to the newest idle one as without caches; with affinity off it goes
// to the newest idle one.
func TestAffinityPicksWarmWorker(t *testing.T) {
	for _, tc := range []struct {
		name      string
		disable   bool
		byHB      bool // the warm worker tells its cache in a Heartbeat
		wantOn    string
		wantWarm  float64
		wantBytes string
	}{
		{name: "warm in register", wantOn: "w2", wantWarm: 1, wantBytes: "blacktree_worker_cache_bytes 5000\n"},
		{name: "warm in heartbeat", byHB: true, wantOn: "w2", wantWarm: 1, wantBytes: "blacktree_worker_cache_bytes 5000\n"},
		{name: "affinity off", disable: true, wantOn: "w3", wantBytes: "blacktree_worker_cache_bytes 5000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			h := e.startHub(func(c *Config) { c.DisableCacheAffinity = tc.disable })
			addr := h.GRPCAddr().String()
			reg2 := &blacktreev1.Register{WorkerId: "w2"}
			if !tc.byHB {
				reg2.Cache = warmFor(4000)
			}
			ws := map[string]*fakeWorker{
				"w1": dialWorker(t, addr, &blacktreev1.Register{WorkerId: "w1", Cache: &blacktreev1.CacheSummary{SizeBytes: 1000}}, false),
				"w2": dialWorker(t, addr, reg2, false),
			}
			if tc.byHB {
				ws["w2"].send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{Cache: warmFor(4000)}}})
				eventually(t, 5*time.Second, "w2's heartbeat summary recorded", func() bool { return h.manager.cacheBytes() == 5000 })
			}
			for _, info := range h.manager.list() {
				if got := len(info.GetCache().GetBuildKeys()); info.GetWorkerId() == "w2" && got != 2 {
					t.Errorf("WorkerInfo of w2 shows %d build keys, want 2", got)
				}
			}
			// The newest idle worker, which placement without caches takes.
			ws["w3"] = dialWorker(t, addr, &blacktreev1.Register{WorkerId: "w3"}, false)

			e.publish(validJob("aff-1"))
			eventually(t, 10*time.Second, "aff-1 offered", func() bool { return h.jobState("aff-1") == jobOffered })
			got := ""
			for _, d := range h.dispatcher.list() {
				if d.GetJobId() == "aff-1" {
					got = d.GetWorkerId()
				}
			}
			if got != tc.wantOn {
				t.Fatalf("aff-1 offered to %q, want %q", got, tc.wantOn)
			}
			w := ws[got]
			w.accept(w.expectRunJob().GetJobId())
			w.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{Response: &blacktreev1.JobResponse{
				JobId: "aff-1", Success: true, ImageUrl: "reg.example/img:1", CachedSteps: 3, TotalSteps: 5}}}})
			e.waitStatus("aff-1")
			w.expectResultAck("aff-1")

			if got := counterValue(h.metrics.warmPlaced); got != tc.wantWarm {
				t.Errorf("warm placements = %v, want %v", got, tc.wantWarm)
			}
			if got := counterValue(h.metrics.coldPlaced); got != 1-tc.wantWarm {
				t.Errorf("cold placements = %v, want %v", got, 1-tc.wantWarm)
			}
			body := getMetrics(t, h)
			for _, want := range []string{
				`blacktree_build_steps_total{cached="true"} 3` + "\n",
				`blacktree_build_steps_total{cached="false"} 2` + "\n",
				tc.wantBytes,
			} {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %q:\n%s", want, body)
				}
			}
		})
	}
}

func getMetrics(t *testing.T, h *testHub) string {
	t.Helper()
	resp, err := http.Get("http://" + h.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return string(b)
}

// busyWarm starts a hub with affinityWait, a warm 1-slot worker running a
// job of the same build key and a free cold worker; it returns them.
func busyWarm(t *testing.T, affinityWait time.Duration) (e *env, h *testHub, warm, cold *fakeWorker) {
	t.Helper()
	e = newEnv(t)
	h = e.startHub(func(c *Config) {
		c.AffinityWait = affinityWait
		c.HoldTimeout = 30 * time.Second
	})
	addr := h.GRPCAddr().String()
	warm = dialWorker(t, addr, &blacktreev1.Register{WorkerId: "warm", Cache: warmFor(1)}, false)
	e.publish(validJob("first"))
	warm.accept(warm.expectRunJob().GetJobId())
	eventually(t, 10*time.Second, "first running", func() bool { return h.jobState("first") == jobRunning })
	cold = dialWorker(t, addr, &blacktreev1.Register{WorkerId: "cold"}, false)
	return e, h, warm, cold
}

// With the default --affinity-wait 0 a job whose warm worker is busy goes
// to a free cold worker at once: while the warm one still runs its job.
func TestAffinityFallsBackAtOnce(t *testing.T) {
	e, h, warm, cold := busyWarm(t, 0)
	e.publish(validJob("second"))
	if got := cold.expectRunJob().GetJobId(); got != "second" {
		t.Fatalf("RunJob on the cold worker = %q, want second", got)
	}
	if st := h.jobState("first"); st != jobRunning {
		t.Errorf("first = %v when second was offered, want still running on the warm worker", st)
	}
	if got := counterValue(h.metrics.coldPlaced); got != 1 {
		t.Errorf("cold placements = %v, want 1", got)
	}
	warm.result("first", true)
	cold.accept("second")
	cold.result("second", true)
	e.waitStatus("first", "second")
}

// With --affinity-wait a job whose warm worker is busy is held for it: it
// goes to the warm worker when that frees its slot within the wait, and
// to the free cold worker once the wait is over.
func TestAffinityWait(t *testing.T) {
	t.Run("warm worker frees a slot", func(t *testing.T) {
		e, h, warm, cold := busyWarm(t, time.Minute)
		e.publish(validJob("second"))
		eventually(t, 10*time.Second, "second held", func() bool { return h.jobState("second") == jobPending })
		warm.result("first", true)
		if got := warm.expectRunJob().GetJobId(); got != "second" {
			t.Fatalf("RunJob on the warm worker = %q, want second", got)
		}
		warm.accept("second")
		warm.result("second", true)
		e.waitStatus("first", "second")
		select {
		case m := <-cold.frames:
			if m.GetRunJob() != nil {
				t.Errorf("the cold worker got RunJob %s, want none", m.GetRunJob().GetJob().GetJobId())
			}
		default:
		}
		if got := counterValue(h.metrics.warmPlaced); got != 2 {
			t.Errorf("warm placements = %v, want 2", got)
		}
	})
	t.Run("wait over", func(t *testing.T) {
		const wait = 300 * time.Millisecond
		e, h, warm, cold := busyWarm(t, wait)
		start := time.Now()
		e.publish(validJob("second"))
		if got := cold.expectRunJob().GetJobId(); got != "second" {
			t.Fatalf("RunJob on the cold worker = %q, want second", got)
		}
		// The hub holds it from when it received it, after the publish.
		if d := time.Since(start); d < wait {
			t.Errorf("second offered to the cold worker after %v, want after the affinity wait %v", d, wait)
		}
		if st := h.jobState("first"); st != jobRunning {
			t.Errorf("first = %v, want still running on the warm worker", st)
		}
		warm.result("first", true)
		cold.accept("second")
		cold.result("second", true)
		e.waitStatus("first", "second")
	})
}
