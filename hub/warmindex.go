package hub

// warmIndex finds the workers whose build cache holds a job's build key
// (jobspec.CacheKey) without scanning the fleet: a pick looks up the key
// and inspects at most warmScanLimit of the workers filed under it.
// Guarded by WorkerManager.mu, like the entries.
//
// holders files every live current session under each key its summary
// names; free files only those with a free slot (the idle list and the
// load index's entries), the ones a job can go to now. An entry's
// membership follows workerEntry.inHolders and inFree, so that a change of
// state moves it only when it crosses between free and not free (a pick
// that leaves a worker partly busy costs nothing here).
type warmIndex struct {
	holders map[string]*entrySet
	free    map[string]*entrySet
	bytes   uint64 // the cache bytes of the entries in holders
}

// warmScanLimit bounds the entries one lookup inspects: enough to step
// over workers whose labels do not match or that the job already tried,
// few enough that a key every worker holds costs a pick what a key of one
// worker does.
const warmScanLimit = 32

// entrySet is a set of entries with O(1) add and remove that a lookup can
// walk newest first (a Go map's iteration after many deletes walks its
// empty slots too).
type entrySet struct {
	list []*workerEntry
	pos  map[*workerEntry]int
}

func (s *entrySet) add(e *workerEntry) {
	if _, ok := s.pos[e]; ok {
		return
	}
	s.pos[e] = len(s.list)
	s.list = append(s.list, e)
}

// remove takes e out by moving the last entry into its place.
func (s *entrySet) remove(e *workerEntry) {
	i, ok := s.pos[e]
	if !ok {
		return
	}
	last := s.list[len(s.list)-1]
	s.list[i], s.pos[last] = last, i
	s.list[len(s.list)-1] = nil
	s.list = s.list[:len(s.list)-1]
	delete(s.pos, e)
}

func setAdd(sets map[string]*entrySet, key string, e *workerEntry) {
	s := sets[key]
	if s == nil {
		s = &entrySet{pos: map[*workerEntry]int{}}
		sets[key] = s
	}
	s.add(e)
}

func setRemove(sets map[string]*entrySet, key string, e *workerEntry) {
	if s := sets[key]; s != nil {
		s.remove(e)
		if len(s.list) == 0 {
			delete(sets, key) // keys come and go with builds: keep memory to the live ones
		}
	}
}

func newWarmIndex() warmIndex {
	return warmIndex{holders: map[string]*entrySet{}, free: map[string]*entrySet{}}
}

// sync files e under its keys as held and free say, moving it only when
// either changed.
func (x *warmIndex) sync(e *workerEntry, held, free bool) {
	if e.cache == nil {
		e.inHolders, e.inFree = held, free // filed under no key: nothing to move
		return
	}
	if held != e.inHolders {
		fileKeys(x.holders, e, held)
		if held {
			x.bytes += e.cache.bytes
		} else {
			x.bytes -= e.cache.bytes
		}
		e.inHolders = held
	}
	if free != e.inFree {
		fileKeys(x.free, e, free)
		e.inFree = free
	}
}

// fileKeys adds e to the set of each of its keys in sets, or with add
// false removes it from them.
func fileKeys(sets map[string]*entrySet, e *workerEntry, add bool) {
	for _, k := range e.cache.keys {
		if add {
			setAdd(sets, k, e)
		} else {
			setRemove(sets, k, e)
		}
	}
}

// bestFree returns the free entry ok accepts that holds key, among the
// first warmScanLimit filed under it (the newest first): the least loaded
// one (the first idle one), or with most the most loaded one; nil if none.
func (x *warmIndex) bestFree(key string, most bool, ok func(*workerEntry) bool) *workerEntry {
	s := x.free[key]
	if s == nil {
		return nil
	}
	var best *workerEntry
	for i, n := len(s.list)-1, 0; i >= 0 && n < warmScanLimit; i, n = i-1, n+1 {
		e := s.list[i]
		if ok(e) && (best == nil || loadAhead(len(e.jobs), e.w.slots, len(best.jobs), best.w.slots, most)) {
			best = e
			if !most && len(e.jobs) == 0 {
				break // idle: none is less loaded
			}
		}
	}
	return best
}

// busyHolder reports whether a worker that ok accepts holds key but has no
// free slot now, and is not draining: one a job could wait for. It looks
// at the first warmScanLimit entries filed under key.
func (x *warmIndex) busyHolder(key string, ok func(*workerEntry) bool) bool {
	s := x.holders[key]
	if s == nil {
		return false
	}
	for i, n := len(s.list)-1, 0; i >= 0 && n < warmScanLimit; i, n = i-1, n+1 {
		if e := s.list[i]; !e.inFree && !e.draining && ok(e) {
			return true
		}
	}
	return false
}
