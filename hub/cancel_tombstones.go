package hub

import "time"

// tombstones remembers cancels for jobs this hub did not hold when the
// cancel came, so that such a job, delivered later, is answered cancelled
// and never run. Bounded two ways: an entry lives ttl, and at most max
// are kept (the oldest forgotten first), so cancels for unknown ids
// cannot grow memory without bound. Not safe for concurrent use: the
// Dispatcher's mu guards it.
type tombstones struct {
	ttl time.Duration
	max int
	// byID maps a job id to its latest entry's expiry; order holds every
	// entry oldest first (a re-cancelled id has several, only the latest
	// counts), from head on. len(byID) <= len(order)-head <= max.
	byID  map[string]tombstone
	order []tombstone
	head  int
	seq   uint64 // numbers entries, so an older one of an id is told apart
}

type tombstone struct {
	jobID   string
	reason  string
	expires time.Time
	seq     uint64
}

func newTombstones(ttl time.Duration, max int) *tombstones {
	return &tombstones{ttl: ttl, max: max, byID: map[string]tombstone{}}
}

// add remembers a cancel of jobID until now+ttl.
func (t *tombstones) add(jobID, reason string, now time.Time) {
	t.prune(now)
	for t.len() >= t.max {
		t.evictOldest()
	}
	t.seq++
	e := tombstone{jobID: jobID, reason: reason, expires: now.Add(t.ttl), seq: t.seq}
	t.byID[jobID] = e
	t.order = append(t.order, e)
}

// take reports whether jobID was cancelled (and why), forgetting it.
func (t *tombstones) take(jobID string, now time.Time) (reason string, ok bool) {
	e, ok := t.byID[jobID]
	if !ok {
		return "", false
	}
	delete(t.byID, jobID)
	if now.After(e.expires) {
		return "", false
	}
	return e.reason, true
}

// len is the number of entries held (the bound applies to it).
func (t *tombstones) len() int { return len(t.order) - t.head }

func (t *tombstones) prune(now time.Time) {
	for t.len() > 0 && now.After(t.order[t.head].expires) {
		t.evictOldest()
	}
}

func (t *tombstones) evictOldest() {
	e := t.order[t.head]
	t.order[t.head] = tombstone{}
	t.head++
	if cur, ok := t.byID[e.jobID]; ok && cur.seq == e.seq {
		delete(t.byID, e.jobID)
	}
	// Compact once the dead prefix is half the slice, so the backing
	// array stays within twice the bound.
	if t.head > 0 && t.head >= len(t.order)/2 {
		t.order = append(t.order[:0:0], t.order[t.head:]...)
		t.head = 0
	}
}
