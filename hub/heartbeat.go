package hub

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Heartbeats: each session's timer, re-armed by every frame, and the
// interval and grid the fleet is told. Like nomad's heartbeat.go, the
// timers live behind WorkerManager.mu, and the interval grows with the
// fleet so that the heartbeats the hub receives stay within a rate
// (Config.MaxHeartbeatRate) however many workers connect.

// heartbeatScale picks the heartbeat interval for a fleet: base × 2^level.
// Guarded by WorkerManager.mu.
type heartbeatScale struct {
	base, max time.Duration
	rate      float64 // heartbeats per second at most; <= 0: level stays 0
	level     int
}

func (s heartbeatScale) interval() time.Duration { return s.base << s.level }

// levelFor returns the level for n live workers, moving from the current
// one: up while n workers at the level's interval would send more than
// rate heartbeats a second (as long as the doubled interval is within
// max); down while n workers at the halved interval would send at most
// 3/4 of rate. The gap between the two thresholds keeps a fleet that
// hovers at a threshold from flipping the interval back and forth.
func (s heartbeatScale) levelFor(n int) int {
	if s.rate <= 0 {
		return 0
	}
	perSecond := func(level int) float64 { return float64(n) / (s.base << level).Seconds() }
	level := s.level
	for perSecond(level) > s.rate && s.base<<(level+1) <= s.max {
		level++
	}
	for level > 0 && perSecond(level-1) <= 0.75*s.rate {
		level--
	}
	return level
}

// FleetHeartbeatInterval is the heartbeat interval a hub with cfg's
// heartbeat settings (zero fields: the defaults) gives a fleet that has
// grown to n workers.
func FleetHeartbeatInterval(cfg Config, n int) (time.Duration, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return 0, err
	}
	s := heartbeatScale{base: cfg.HeartbeatInterval, max: cfg.MaxHeartbeatInterval, rate: cfg.MaxHeartbeatRate}
	s.level = s.levelFor(n)
	return s.interval(), nil
}

// rescaleLocked moves the fleet's heartbeat interval to suit nLive live
// workers. It tells nobody at once: each live session that takes updates
// is sent the new interval with its next heartbeat (tellIntervalLocked),
// so a change reaches a large fleet spread over one interval, from
// goroutines that are awake anyway, instead of as thousands of sends at
// the moment the fleet crosses a threshold.
func (m *WorkerManager) rescaleLocked() {
	level := m.heartbeats.levelFor(m.nLive)
	if level == m.heartbeats.level {
		return
	}
	m.heartbeats.level = level
	m.log.Info("heartbeat interval changed", "heartbeat_interval", m.heartbeats.interval(), "workers", m.nLive, "max_heartbeat_rate", m.heartbeats.rate)
}

// tellIntervalLocked sends e's session the fleet's interval when it was
// told another one and takes updates, and from then on judges it by the
// new one. Called with a heartbeat: until it reads the frame the worker
// keeps beating at the old interval, which the session is judged by until
// now. A longer interval gets its full allowance from now; a shorter one
// too, since the worker starts it within one new interval of reading it.
func (m *WorkerManager) tellIntervalLocked(e *workerEntry) {
	d := m.heartbeats.interval()
	if e.interval == d || !e.w.intervalUpdates {
		return
	}
	e.interval = d
	e.w.send(&blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_HeartbeatInterval{
		HeartbeatInterval: &blacktreev1.HeartbeatInterval{Interval: durationpb.New(d)}}})
}

// heartbeatGrid is Registered.heartbeat_grid: the step workers pick their
// heartbeats' phase on, so that the fleet's heartbeats arrive in groups
// (Config.HeartbeatGrid); nil when off.
func (h *Hub) heartbeatGrid() *durationpb.Duration {
	if h.cfg.HeartbeatGrid <= 0 {
		return nil
	}
	return durationpb.New(h.cfg.HeartbeatGrid)
}

// heartbeatInterval is the interval the fleet is given now.
func (m *WorkerManager) heartbeatInterval() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.heartbeats.interval()
}

// armHeartbeatLocked (re)starts e's missed-heartbeats timer: it fires
// after MissedHeartbeats of e's intervals without a frame.
func (m *WorkerManager) armHeartbeatLocked(e *workerEntry) {
	deadAfter := time.Duration(m.missed) * e.interval
	switch {
	case e.hbTimer != nil:
		e.hbTimer.Reset(deadAfter)
	case !m.closed && !e.dead:
		w := e.w
		e.hbTimer = time.AfterFunc(deadAfter, func() { m.heartbeatExpired(w) })
	}
}

func (m *WorkerManager) heartbeatExpired(w *Worker) {
	m.mu.Lock()
	e := m.currentLocked(w)
	var silent time.Duration
	if e != nil {
		silent = time.Since(e.lastSeen).Round(time.Millisecond)
	}
	m.mu.Unlock()
	if e != nil {
		w.log.Warn("heartbeats missed; closing the session", "silent_for", silent)
		w.kill(ErrMissedHeartbeats)
	}
}

// touch records a frame from w and re-arms its heartbeat timer.
func (m *WorkerManager) touch(w *Worker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.currentLocked(w); e != nil {
		m.touchLocked(e)
	}
}

func (m *WorkerManager) touchLocked(e *workerEntry) {
	e.lastSeen = time.Now()
	m.armHeartbeatLocked(e)
}

// heartbeat is touch and setDraining under one lock (a heartbeat carries
// the worker's draining flag), and sends the worker a new heartbeat
// interval when the fleet's has changed; it reports whether the flag
// changed.
func (m *WorkerManager) heartbeat(w *Worker, draining bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.currentLocked(w)
	if e == nil {
		return false
	}
	m.tellIntervalLocked(e)
	m.touchLocked(e)
	return m.setDrainingLocked(e, draining)
}
