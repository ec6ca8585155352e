package hub

// Pacer is implemented by brokers whose consumption the hub paces to its
// free capacity (docs/design/consumption.md). *rabbit.Client implements
// it (with rabbit.Config.Paced set).
type Pacer interface {
	// SetWindow sets how many deliveries the broker may let the hub hold
	// unacknowledged; 0 stops new deliveries. It never blocks.
	SetWindow(n int)
}

// countFreeLocked keeps m.freeSlots, the free slots of the live workers
// that take jobs, in step with e, which free says can take one; indexLocked
// calls it after every change of an entry. A change wakes the Dispatcher
// (capacityChanged), which tells the broker the new window.
func (m *WorkerManager) countFreeLocked(e *workerEntry, free bool) {
	n := 0
	if free {
		n = max(e.w.slots-len(e.jobs), 0)
	}
	if n == e.freeSlots {
		return
	}
	m.freeSlots += n - e.freeSlots
	e.freeSlots = n
	select {
	case m.capacityChanged <- struct{}{}:
	default: // a wake-up is already due; it reads the latest count
	}
}

// free is the number of free slots of the live workers that take jobs.
func (m *WorkerManager) free() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.freeSlots
}

// window is how many deliveries the hub wants to hold: its free slots plus
// Config.Lookahead, and none with no free slot or while draining. It is
// read under mu so that a slot freed and at once taken by a held job (one
// critical section of mu) is never seen free.
func (d *Dispatcher) window() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining {
		return 0
	}
	free := d.m.free()
	if free == 0 {
		return 0
	}
	return free + max(d.cfg.Lookahead, 0)
}

// pace tells a pacing broker the hub's window.
func (d *Dispatcher) pace() {
	if d.pacer != nil {
		d.pacer.SetWindow(d.window())
	}
}
