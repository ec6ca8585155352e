package hub

import (
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// WorkerState is a worker's state as inferred from its stream
// (docs/protocol.md#worker-states).
type WorkerState int

// Worker states.
const (
	StateFree     WorkerState = iota + 1 // registered, has a free slot
	StateBusy                            // every slot taken
	StateDraining                        // finishes its jobs, takes no new ones
	StateDead                            // stream gone or heartbeats missed
)

var allStates = []WorkerState{StateFree, StateBusy, StateDraining, StateDead}

func (s WorkerState) String() string {
	switch s {
	case StateFree:
		return "free"
	case StateBusy:
		return "busy"
	case StateDraining:
		return "draining"
	case StateDead:
		return "dead"
	}
	return "unknown"
}

func (s WorkerState) proto() blacktreev1.WorkerState {
	switch s {
	case StateFree:
		return blacktreev1.WorkerState_WORKER_STATE_FREE
	case StateBusy:
		return blacktreev1.WorkerState_WORKER_STATE_BUSY
	case StateDraining:
		return blacktreev1.WorkerState_WORKER_STATE_DRAINING
	case StateDead:
		return blacktreev1.WorkerState_WORKER_STATE_DEAD
	}
	return blacktreev1.WorkerState_WORKER_STATE_UNSPECIFIED
}

// workerEntry is what the manager knows about one worker id: its current
// (or last) session and the jobs on that session.
type workerEntry struct {
	w         *Worker
	jobs      map[string]struct{} // offered or running on w
	current   bool                // m.workers[w.id] is this entry (w.entry points here while it is)
	draining  bool
	drained   bool // drained by an operator (DrainWorker): the worker's heartbeats cannot undo it
	dead      bool
	deadCause string
	lastSeen  time.Time
	interval  time.Duration // the heartbeat interval this session was told
	hbTimer   *time.Timer   // fires when heartbeats are missed; nil when dead
	reapTimer *time.Timer   // removes a dead entry after DeadRetention

	list       *entryList   // the idle list or the load index bucket e is in; nil if neither
	prev, next *workerEntry // links in list

	cache     *cacheSummary // what the session's build cache holds, as it last said; nil: never said
	inHolders bool          // filed under cache.keys in warm.holders
	inFree    bool          // filed under cache.keys in warm.free
	freeSlots int           // what e adds to WorkerManager.freeSlots

	// saysDraining: the worker itself said it is draining (Register,
	// Heartbeat, a DRAINING reject); with draining, it is fenced (drain.go).
	saysDraining bool
}

func (e *workerEntry) stateLocked() WorkerState {
	switch {
	case e.dead:
		return StateDead
	case e.draining:
		return StateDraining
	case len(e.jobs) >= e.w.slots:
		return StateBusy
	}
	return StateFree
}

// WorkerManager is the live set of workers. State has one owner: mu.
// Heartbeat and retention timers live behind mu (nomad's heartbeat.go
// style); their callbacks take mu and check that the entry still belongs to
// the session that armed them.
type WorkerManager struct {
	missed    int // heartbeat intervals without a frame that make a worker dead
	retention time.Duration
	placement Placement
	log       hclog.Logger

	mu      sync.Mutex // guards the following
	workers map[string]*workerEntry
	// idle and partial index the current, free entries so that pick does
	// not scan the whole fleet per job (with 10,000 workers the scan, under
	// the lock every heartbeat takes, dominated the hub's CPU). idle holds
	// free entries with no job, partial those with some jobs and a free
	// slot, by load. indexLocked keeps them in step after every change of
	// an entry.
	idle    entryList
	partial loadIndex
	// warm indexes the live entries by the build keys their caches hold,
	// for cache-aware placement (warmindex.go).
	warm   warmIndex
	closed bool
	// ops are the operator's drains and denies by worker id (operator.go).
	ops operatorDecisions
	// nLive counts the current sessions that are not dead; heartbeats
	// picks the heartbeat interval for that many (heartbeat.go).
	nLive      int
	heartbeats heartbeatScale
	// freeSlots counts the free slots of the current entries that take
	// jobs (capacity.go); capacityChanged (buffer 1) is signalled when it
	// changes, never blocking.
	freeSlots       int
	capacityChanged chan struct{}
}

func newWorkerManager(cfg Config, log hclog.Logger) *WorkerManager {
	return &WorkerManager{
		missed:    cfg.MissedHeartbeats,
		retention: cfg.DeadRetention,
		placement: cfg.Placement,
		log:       log,
		workers:   map[string]*workerEntry{},
		warm:      newWarmIndex(),
		// capacityChanged is made here, with its one-slot buffer, so
		// that a change is signalled without blocking under mu.
		capacityChanged: make(chan struct{}, 1),
		heartbeats: heartbeatScale{
			base: cfg.HeartbeatInterval,
			max:  cfg.MaxHeartbeatInterval,
			rate: cfg.MaxHeartbeatRate,
		},
	}
}

// indexLocked files e under idle or partial when it is its worker's current
// entry and free, and removes it from both otherwise; and in the warm index
// as live and free say.
// An entry that stays idle keeps its place in idle (the order is when it
// became idle), and one whose load did not change its place in partial.
func (m *WorkerManager) indexLocked(e *workerEntry) {
	free := e.current && e.stateLocked() == StateFree
	m.warm.sync(e, e.current && !e.dead, free)
	m.countFreeLocked(e, free)
	switch {
	case free && len(e.jobs) == 0:
		m.partial.remove(e)
		m.idle.pushBack(e)
	case free:
		m.idle.remove(e)
		m.partial.file(e)
	default:
		m.idle.remove(e)
		m.partial.remove(e)
	}
}

// register makes w the current session of its worker id and returns the
// session it replaces (nil if none was live). It first calls registered
// with the heartbeat interval to tell w, under the manager's lock, so that
// w is judged by the interval it is told even when the fleet's changes
// meanwhile.
func (m *WorkerManager) register(w *Worker, draining bool, registered func(interval time.Duration)) (old *Worker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.workers[w.id]
	if prev != nil {
		if !prev.dead {
			old = prev.w
		}
		m.stopTimersLocked(prev)
	}
	if old == nil {
		m.nLive++ // a replacement keeps the count
		m.rescaleLocked()
	}
	e := &workerEntry{
		w:        w,
		jobs:     map[string]struct{}{},
		current:  true,
		draining: draining,
		lastSeen: time.Now(),
		interval: m.heartbeats.interval(),
	}
	e.saysDraining = draining
	registered(e.interval)
	m.applyOperatorLocked(e)
	m.armHeartbeatLocked(e)
	m.workers[w.id], w.entry = e, e
	if prev != nil {
		prev.current = false
		m.indexLocked(prev)
	}
	m.indexLocked(e)
	return old
}

func (m *WorkerManager) stopTimersLocked(e *workerEntry) {
	if e.hbTimer != nil {
		e.hbTimer.Stop()
		e.hbTimer = nil
	}
	if e.reapTimer != nil {
		e.reapTimer.Stop()
		e.reapTimer = nil
	}
}

// currentLocked returns w's entry when w is still its worker's live session.
// It follows w.entry rather than looking w.id up: every frame of every
// worker comes here, and with 10,000 workers the map lookup (a cache miss
// into a large table) was a tenth of the hub's heartbeat CPU.
func (m *WorkerManager) currentLocked(w *Worker) *workerEntry {
	e := w.entry
	if e == nil || !e.current || e.dead {
		return nil
	}
	return e
}

// gone marks w dead (when it is still current). Its jobs are the
// Dispatcher's to settle.
func (m *WorkerManager) gone(w *Worker, cause error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.currentLocked(w)
	if e == nil {
		return
	}
	m.stopTimersLocked(e)
	e.dead, e.deadCause, e.jobs = true, cause.Error(), map[string]struct{}{}
	m.indexLocked(e)
	m.nLive--
	m.rescaleLocked()
	if !m.closed {
		e.reapTimer = time.AfterFunc(m.retention, func() { m.reap(w) })
	}
}

func (m *WorkerManager) reap(w *Worker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.workers[w.id]; e != nil && e.w == w && e.dead {
		delete(m.workers, w.id)
		e.current = false
		m.indexLocked(e)
	}
}

// setDraining records w's draining flag; it reports whether it changed.
func (m *WorkerManager) setDraining(w *Worker, draining bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.currentLocked(w)
	return e != nil && m.setDrainingLocked(e, draining)
}

func (m *WorkerManager) setDrainingLocked(e *workerEntry, draining bool) bool {
	e.saysDraining = draining
	if e.draining == draining || !draining && e.drained {
		return false
	}
	e.draining = draining
	m.indexLocked(e)
	return true
}

// drain marks the worker named idOrName draining and sends it Drain; its
// later sessions are draining too (operator.go).
func (m *WorkerManager) drain(idOrName, reason string) (*blacktreev1.WorkerInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookupLocked(idOrName)
	if !ok {
		return nil, false
	}
	m.rememberDrainLocked(e.w.id, reason)
	if !e.dead {
		e.draining, e.drained = true, true
		m.indexLocked(e)
		e.w.send(drainMsg(reason))
	}
	return m.infoLocked(e), true
}

// setCache records what w's build cache holds now (the summary of its
// Register, or of a Heartbeat that carried one).
func (m *WorkerManager) setCache(w *Worker, cs cacheSummary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.currentLocked(w)
	if e == nil {
		return
	}
	held, free := e.inHolders, e.inFree
	m.warm.sync(e, false, false) // out under the old keys
	e.cache = &cs
	m.warm.sync(e, held, free)
}

// cacheBytes is the build cache the live workers report, in bytes.
func (m *WorkerManager) cacheBytes() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.warm.bytes
}

// hold records jobID as on w (adopted running jobs may exceed slots).
func (m *WorkerManager) hold(w *Worker, jobID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.currentLocked(w)
	if e != nil {
		e.jobs[jobID] = struct{}{}
		m.indexLocked(e)
	}
	return e != nil
}

// release frees jobID's slot on w.
func (m *WorkerManager) release(w *Worker, jobID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.currentLocked(w); e != nil {
		delete(e.jobs, jobID)
		m.indexLocked(e)
	}
}

// current returns the live session of worker id, or nil.
func (m *WorkerManager) current(id string) *Worker {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.workers[id]; e != nil && !e.dead {
		return e.w
	}
	return nil
}

// live returns every live session.
func (m *WorkerManager) live() []*Worker {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Worker
	for _, e := range m.workers {
		if !e.dead {
			out = append(out, e.w)
		}
	}
	return out
}

// countByState counts workers per state (for metrics).
func (m *WorkerManager) countByState() map[WorkerState]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[WorkerState]int{}
	for _, e := range m.workers {
		out[e.stateLocked()]++
	}
	return out
}

// list describes every known worker, sorted by id.
func (m *WorkerManager) list() []*blacktreev1.WorkerInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*blacktreev1.WorkerInfo, 0, len(m.workers))
	for _, e := range m.workers {
		out = append(out, m.infoLocked(e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetWorkerId() < out[j].GetWorkerId() })
	return out
}

func (m *WorkerManager) infoLocked(e *workerEntry) *blacktreev1.WorkerInfo {
	jobs := make([]string, 0, len(e.jobs))
	for id := range e.jobs {
		jobs = append(jobs, id)
	}
	sort.Strings(jobs)
	labels := make(map[string]string, len(e.w.labels))
	for k, v := range e.w.labels {
		labels[k] = v
	}
	info := &blacktreev1.WorkerInfo{
		WorkerId: e.w.id, Name: e.w.name, State: e.stateLocked().proto(), Labels: labels,
		Slots: uint32(e.w.slots), RunningJobIds: jobs, ConnectedSince: timestamppb.New(e.w.connected),
		LastHeartbeat: timestamppb.New(e.lastSeen), Address: e.w.addr, Version: e.w.version, SessionId: e.w.sessionID,
		Fenced: e.fencedLocked(), ProtocolVersion: e.w.protocol,
	}
	if e.cache != nil {
		info.Cache = e.cache.proto()
	}
	return info
}

// close stops every timer; later registrations arm none.
func (m *WorkerManager) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, e := range m.workers {
		m.stopTimersLocked(e)
	}
}
