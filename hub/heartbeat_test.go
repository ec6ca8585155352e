package hub

import (
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestHeartbeatScaleLevelFor(t *testing.T) {
	// 5s up to 1,000 heartbeats/s: 5,000 workers; 10s: 10,000; 20s is the cap.
	scale := heartbeatScale{base: 5 * time.Second, max: 20 * time.Second, rate: 1000}
	for _, tc := range []struct {
		name  string
		level int // current
		n     int
		want  int
	}{
		{name: "empty fleet", n: 0, want: 0},
		{name: "at the rate", n: 5000, want: 0},
		{name: "one over the rate", n: 5001, want: 1},
		{name: "10k workers", n: 10000, want: 1},
		{name: "two steps at once", n: 10001, want: 2},
		{name: "capped at max", n: 1000000, want: 2},
		{name: "stays up inside the gap", level: 1, n: 3751, want: 1},
		{name: "down at 3/4 of the rate", level: 1, n: 3750, want: 0},
		{name: "all the way down", level: 2, n: 10, want: 0},
		{name: "down one step", level: 2, n: 7500, want: 1},
		{name: "stays at the cap", level: 2, n: 7501, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := scale
			s.level = tc.level
			if got := s.levelFor(tc.n); got != tc.want {
				t.Errorf("levelFor(%d) from level %d = %d, want %d", tc.n, tc.level, got, tc.want)
			}
		})
	}
	off := heartbeatScale{base: time.Second, max: time.Hour, rate: -1}
	if got := off.levelFor(1 << 30); got != 0 {
		t.Errorf("levelFor() with a negative rate = %d, want 0 (the interval never changes)", got)
	}
}

// intervalOf is the heartbeat interval the hub judges the worker's live
// session by.
func (h *testHub) intervalOf(id string) time.Duration {
	h.manager.mu.Lock()
	defer h.manager.mu.Unlock()
	if e := h.manager.workers[id]; e != nil && !e.dead {
		return e.interval
	}
	return 0
}

// The hub stretches the fleet's heartbeat interval as workers connect and
// shortens it as they leave; workers that take updates are told with
// their next heartbeat, the others keep the interval they registered with.
func TestHeartbeatIntervalFollowsFleetSize(t *testing.T) {
	e := newEnv(t)
	// An hour per beat keeps the fake workers (which never beat) alive; at
	// most 2.2 heartbeats an hour: 1h for 2 workers, 2h for 3 or 4, 4h
	// (the cap) beyond; back to 2h at 3 workers (1.5 an hour at 2h, at
	// most 3/4 of the rate).
	h := e.startHub(func(c *Config) {
		c.HeartbeatInterval, c.MaxHeartbeatInterval, c.MaxHeartbeatRate = time.Hour, 4*time.Hour, 2.2/3600
		c.HeartbeatGrid = time.Minute
	})
	addr := h.GRPCAddr().String()
	dial := func(id string, updates bool) *fakeWorker {
		return dialWorker(t, addr, &blacktreev1.Register{WorkerId: id, HeartbeatIntervalUpdates: updates}, false)
	}
	registered := func(f *fakeWorker, want time.Duration) {
		t.Helper()
		if got := f.reg.GetHeartbeatInterval().AsDuration(); got != want {
			t.Errorf("%s: Registered.heartbeat_interval = %v, want %v", f.id, got, want)
		}
		if got := f.reg.GetHeartbeatGrid().AsDuration(); got != time.Minute {
			t.Errorf("%s: Registered.heartbeat_grid = %v, want 1m", f.id, got)
		}
	}
	told := func(f *fakeWorker, want time.Duration) {
		t.Helper()
		m := f.next("HeartbeatInterval", func(m *blacktreev1.HubMessage) bool { return m.GetHeartbeatInterval() != nil })
		if got := m.GetHeartbeatInterval().GetInterval().AsDuration(); got != want {
			t.Errorf("%s: HeartbeatInterval = %v, want %v", f.id, got, want)
		}
	}
	judged := func(want map[string]time.Duration) {
		t.Helper()
		for id, d := range want {
			if got := h.intervalOf(id); got != d {
				t.Errorf("intervalOf(%s) = %v, want %v", id, got, d)
			}
		}
	}

	beat := func(fs ...*fakeWorker) {
		for _, f := range fs {
			f.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{}}})
		}
	}

	a := dial("a", true)
	old := dial("old", false) // a worker from before HeartbeatInterval frames
	registered(a, time.Hour)
	registered(old, time.Hour)

	c := dial("c", true) // 3 workers: 2h
	registered(c, 2*time.Hour)
	// The others learn it with their next heartbeat; until then they are
	// judged by what they were told.
	judged(map[string]time.Duration{"a": time.Hour, "old": time.Hour, "c": 2 * time.Hour})
	beat(a, old)
	told(a, 2*time.Hour)
	judged(map[string]time.Duration{"a": 2 * time.Hour, "old": time.Hour, "c": 2 * time.Hour})

	d := dial("d", true) // 4: still 2h
	registered(d, 2*time.Hour)
	x := dial("x", true) // 5: 4h
	registered(x, 4*time.Hour)
	beat(a, c, d)
	for _, f := range []*fakeWorker{a, c, d} {
		told(f, 4*time.Hour)
	}

	// A reconnect replaces a session: the fleet's size, and so its
	// interval, stay.
	a.kill()
	a = dial("a", true)
	registered(a, 4*time.Hour)

	x.kill() // 4 workers at 2h would send 2 an hour: more than 3/4 of the rate (1.65)
	eventually(t, 5*time.Second, "x dead", func() bool { return h.intervalOf("x") == 0 })
	d.kill() // 3 at 2h: 1.5 an hour
	eventually(t, 5*time.Second, "d dead", func() bool { return h.intervalOf("d") == 0 })
	beat(a, c, old)
	for _, f := range []*fakeWorker{a, c} {
		told(f, 2*time.Hour)
	}
	judged(map[string]time.Duration{"a": 2 * time.Hour, "old": time.Hour, "c": 2 * time.Hour})
	for _, f := range []*fakeWorker{a, c, d, x} {
		select {
		case m := <-f.frames:
			if m.GetHeartbeatInterval() != nil {
				t.Errorf("%s: extra %v", f.id, m)
			}
		default:
		}
	}
	for {
		select {
		case m := <-old.frames:
			if m.GetHeartbeatInterval() != nil {
				t.Fatalf("old: got %v, want no HeartbeatInterval (it did not ask for updates)", m)
			}
			continue
		default:
		}
		break
	}
}

// With the grid off the hub gives no schedule: workers pick their own.
func TestHeartbeatGridOff(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.HeartbeatInterval, c.HeartbeatGrid = time.Hour, -1 })
	f := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w", HeartbeatIntervalUpdates: true}, false)
	if grid := f.reg.GetHeartbeatGrid(); grid != nil {
		t.Errorf("Registered.heartbeat_grid = %v with HeartbeatGrid -1, want unset", grid)
	}
}
