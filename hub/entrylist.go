package hub

// entryList is an intrusive list of manager entries, guarded by
// WorkerManager.mu like the entries themselves. An entry is in at most one
// list at a time (workerEntry.list): the idle list or one bucket of the
// load index (loadindex.go), so one set of links serves both.
//
// The idle list holds the idle workers (free, no job) in the order they
// became idle. pick takes the most recent one that matches: among workers
// with no job (all equally least loaded) the one that just finished has
// warm caches (docker layers, git objects) and a connection the hub has
// just written to, so a burst of jobs keeps reusing a small hot set instead
// of touching thousands of idle connections (docs/design/dispatch-throughput.md).
type entryList struct {
	head, tail *workerEntry
	n          int
	// slots and jobs are the load of a load index bucket's entries; 0 for
	// the idle list.
	slots, jobs int
}

func (l *entryList) has(e *workerEntry) bool { return e.list == l }

func (l *entryList) len() int { return l.n }

// pushBack adds e as the newest entry, taking it out of any other list;
// an entry already in l keeps its place.
func (l *entryList) pushBack(e *workerEntry) {
	if e.list == l {
		return
	}
	if e.list != nil {
		e.list.remove(e)
	}
	e.list, e.prev, e.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	l.n++
}

// remove takes e out, if it is in l.
func (l *entryList) remove(e *workerEntry) {
	if e.list != l {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.list, e.prev, e.next = nil, nil, nil
	l.n--
}

// newestMatch returns the newest entry ok accepts, or nil.
func (l *entryList) newestMatch(ok func(*workerEntry) bool) *workerEntry {
	for e := l.tail; e != nil; e = e.prev {
		if ok(e) {
			return e
		}
	}
	return nil
}
