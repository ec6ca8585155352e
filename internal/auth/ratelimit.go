package auth

import (
	"sync"
	"time"
)

// maxTrackedPeers bounds the limiter's memory. Past it, expired entries are
// dropped; if all are live, the oldest window is evicted.
const maxTrackedPeers = 10000

// limiter counts failures per key (peer IP) in fixed windows.
type limiter struct {
	max    int // <= 0: no limit
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex // guards the following
	peers map[string]*failWindow
}

type failWindow struct {
	start    time.Time
	failures int
}

func newLimiter(max int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{max: max, window: window, now: now, peers: make(map[string]*failWindow)}
}

// limited reports whether key has used up its failures for this window.
func (l *limiter) limited(key string) bool {
	if l.max <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.peers[key]
	if !ok {
		return false
	}
	if l.now().Sub(w.start) >= l.window {
		delete(l.peers, key)
		return false
	}
	return w.failures >= l.max
}

// fail records a failure for key and reports whether key is now limited.
func (l *limiter) fail(key string) bool {
	if l.max <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	w, ok := l.peers[key]
	if !ok || now.Sub(w.start) >= l.window {
		if !ok && len(l.peers) >= maxTrackedPeers {
			l.pruneLocked(now)
		}
		w = &failWindow{start: now}
		l.peers[key] = w
	}
	w.failures++
	return w.failures >= l.max
}

func (l *limiter) pruneLocked(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, w := range l.peers {
		if now.Sub(w.start) >= l.window {
			delete(l.peers, k)
			continue
		}
		if oldestKey == "" || w.start.Before(oldest) {
			oldestKey, oldest = k, w.start
		}
	}
	if len(l.peers) >= maxTrackedPeers {
		delete(l.peers, oldestKey)
	}
}
