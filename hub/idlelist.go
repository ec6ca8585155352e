package hub

// idleList holds the idle workers (free, no job) in the order they became
// idle. pick takes the most recent one that matches: among workers with
// no job (all equally least loaded) the one that just finished has warm
// caches (docker layers, git objects) and a connection the hub has just
// written to, so a burst of jobs keeps reusing a small hot set instead of
// touching thousands of idle connections (docs/BENCHMARKS.md G6).
//
// It is intrusive (links live in workerEntry) and guarded by
// WorkerManager.mu, like the entries themselves.
type idleList struct {
	head, tail *workerEntry
	n          int
}

func (l *idleList) has(e *workerEntry) bool { return e.inIdle }

func (l *idleList) len() int { return l.n }

// pushBack adds e as the most recently idle entry.
func (l *idleList) pushBack(e *workerEntry) {
	if e.inIdle {
		return
	}
	e.inIdle, e.idlePrev, e.idleNext = true, l.tail, nil
	if l.tail != nil {
		l.tail.idleNext = e
	} else {
		l.head = e
	}
	l.tail = e
	l.n++
}

// remove takes e out, if it is in.
func (l *idleList) remove(e *workerEntry) {
	if !e.inIdle {
		return
	}
	if e.idlePrev != nil {
		e.idlePrev.idleNext = e.idleNext
	} else {
		l.head = e.idleNext
	}
	if e.idleNext != nil {
		e.idleNext.idlePrev = e.idlePrev
	} else {
		l.tail = e.idlePrev
	}
	e.inIdle, e.idlePrev, e.idleNext = false, nil, nil
	l.n--
}

// newestMatch returns the most recently idle entry ok accepts, or nil.
func (l *idleList) newestMatch(ok func(*workerEntry) bool) *workerEntry {
	for e := l.tail; e != nil; e = e.idlePrev {
		if ok(e) {
			return e
		}
	}
	return nil
}
