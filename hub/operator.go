package hub

// Operator decisions about a worker id that outlive its sessions, until
// the hub restarts: a drain (DrainWorker) keeps the worker draining when
// it reconnects, and a deny (DenyWorker) refuses its Register. Both live
// in the WorkerManager, behind its mu, so that a Register racing a deny
// either is refused or is registered and then ended by it.
type operatorDecisions struct {
	drained map[string]string // worker id -> drain reason
	denied  map[string]string // worker id -> deny reason
}

// applyOperatorLocked applies the decisions about e's worker id to its new
// session e (from register, once Registered is queued): a drained worker
// is draining again and told so; a denied one is ended at once (a deny that
// raced its Register).
func (m *WorkerManager) applyOperatorLocked(e *workerEntry) {
	if reason, ok := m.ops.drained[e.w.id]; ok {
		e.draining, e.drained = true, true
		e.w.send(drainMsg(reason))
	}
	if _, ok := m.ops.denied[e.w.id]; ok {
		e.w.kill(ErrDenied)
	}
}

// lookupLocked finds the entry of a worker id, or else of the one worker
// with that name.
func (m *WorkerManager) lookupLocked(idOrName string) (*workerEntry, bool) {
	if e := m.workers[idOrName]; e != nil {
		return e, true
	}
	var match *workerEntry
	for _, c := range m.workers {
		if c.w.name == idOrName {
			if match != nil {
				return nil, false
			}
			match = c
		}
	}
	return match, match != nil
}

// deny refuses a worker from now on: idOrName is a known worker's id or
// unique name, or else taken as the id of a worker not seen yet. A live
// session of the worker is ended (ErrDenied).
func (m *WorkerManager) deny(idOrName, reason string) (id string, ended bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id = idOrName
	e, ok := m.lookupLocked(idOrName)
	if ok {
		id = e.w.id
	}
	if m.ops.denied == nil {
		m.ops.denied = map[string]string{}
	}
	m.ops.denied[id] = reason
	if ok && e.current && !e.dead {
		e.w.kill(ErrDenied)
		ended = true
	}
	return id, ended
}

// denied reports whether id is denied, and why.
func (m *WorkerManager) denied(id string) (reason string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	reason, ok = m.ops.denied[id]
	return reason, ok
}

// deniedCount is how many worker ids are denied (for metrics).
func (m *WorkerManager) deniedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ops.denied)
}

// rememberDrainLocked keeps an operator's drain of id for its later
// sessions.
func (m *WorkerManager) rememberDrainLocked(id, reason string) {
	if m.ops.drained == nil {
		m.ops.drained = map[string]string{}
	}
	m.ops.drained[id] = reason
}
