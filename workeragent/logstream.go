package workeragent

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/redact"
)

// finalFlushTimeout bounds how long a finished job's remaining output may
// wait for a slow or missing hub before it is dropped (the result, which
// carries the log tail, must not wait on it).
const finalFlushTimeout = 5 * time.Second

// logStream is the io.Writer a job's executor writes to. Writes never
// block: output is scrubbed as it arrives and buffered up to a limit; beyond
// it, output is dropped and a note says how much. A pump goroutine
// (Agent.pumpLogs) cuts the buffer into JobLog chunks.
type logStream struct {
	jobID   string
	secrets *redact.Secrets
	limit   int
	ready   chan struct{} // cap 1: something to do (data or close)
	full    chan struct{} // cap 1: a whole chunk (MaxLogChunk) is waiting
	closed  chan struct{} // closed by Close

	mu      sync.Mutex // guards the following
	buf     []byte     // scrubbed, except that a secret's prefix may end it
	dropped int
	done    bool
	seq     uint64
}

func newLogStream(jobID string, secrets *redact.Secrets, limit int) *logStream {
	return &logStream{
		jobID:   jobID,
		secrets: secrets,
		limit:   limit,
		ready:   make(chan struct{}, 1),
		full:    make(chan struct{}, 1),
		closed:  make(chan struct{}),
	}
}

func (l *logStream) signal() { poke(l.ready) }

// poke signals a cap-1 channel without blocking.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Write implements io.Writer. It never fails and never blocks on the hub.
func (l *logStream) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return len(p), nil
	}
	if l.dropped > 0 && len(l.buf) < l.limit/2 {
		l.appendDropNoteLocked()
	}
	if l.dropped > 0 {
		l.dropped += len(p)
		return len(p), nil
	}
	room := l.limit - len(l.buf)
	take := p
	if len(take) > room {
		take = take[:room]
	}
	old := len(l.buf)
	l.buf = append(l.buf, take...)
	l.scrubTailLocked(old)
	if len(take) < len(p) {
		l.dropped += len(p) - len(take)
		// What follows is lost, so a secret's prefix at the end can
		// never be completed: drop it rather than let it out.
		for n := l.secrets.Holdback(l.buf); n > 0; n = l.secrets.Holdback(l.buf) {
			l.buf = l.buf[:len(l.buf)-n]
			l.dropped += n
		}
	}
	l.signal()
	if len(l.buf) >= MaxLogChunk {
		poke(l.full)
	}
	return len(p), nil
}

// scrubTailLocked scrubs the part of buf that new bytes (from old on) may
// have completed a secret in: buf[:old] is already scrubbed, so a secret
// can only start in its held-back suffix.
func (l *logStream) scrubTailLocked(old int) {
	start := old - l.secrets.Holdback(l.buf[:old])
	tail := string(l.buf[start:])
	if s := l.secrets.Scrub(tail); s != tail {
		l.buf = append(l.buf[:start], s...)
	}
}

func (l *logStream) appendDropNoteLocked() {
	l.buf = append(l.buf, fmt.Sprintf("\n[blacktree: %d bytes of output dropped: the hub is not keeping up]\n", l.dropped)...)
	l.dropped = 0
}

// Close marks the end of the job's output.
func (l *logStream) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	if l.dropped > 0 {
		// Drop any held-back secret prefix before the note: its
		// continuation is gone.
		for n := l.secrets.Holdback(l.buf); n > 0; n = l.secrets.Holdback(l.buf) {
			l.buf = l.buf[:len(l.buf)-n]
		}
		l.appendDropNoteLocked()
	}
	l.done = true
	close(l.closed)
	l.signal()
}

// next cuts the next chunk. ok is false when there is nothing to send now;
// finished is true once the stream is closed and empty.
func (l *logStream) next() (msg *blacktreev1.WorkerMessage, ok, finished bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.buf)
	if !l.done {
		n -= l.secrets.Holdback(l.buf)
	}
	if n > MaxLogChunk {
		n = MaxLogChunk
		for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(l.buf[n]); i++ {
			n--
		}
	}
	if n <= 0 {
		return nil, false, l.done && len(l.buf) == 0
	}
	data := strings.ToValidUTF8(string(l.buf[:n]), "\uFFFD")
	l.buf = append(l.buf[:0], l.buf[n:]...)
	seq := l.seq
	l.seq++
	msg = &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobLog{JobLog: &blacktreev1.JobLog{
		JobId: l.jobID,
		Seq:   seq,
		Data:  data,
	}}}
	return msg, true, l.done && len(l.buf) == 0
}

// isClosed reports whether Close was called.
func (l *logStream) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

// gathering reports whether output is waiting, less than a whole chunk.
func (l *logStream) gathering() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buf) > 0 && len(l.buf) < MaxLogChunk
}

// pumpLogs sends a job's output as JobLog chunks on whichever session is
// current, until the stream is closed and flushed. After each chunk it lets
// output gather for LogFlushInterval, unless a whole chunk is waiting or the
// job has ended. Output produced while no session is up stays buffered
// (bounded by the logStream). Once the job has finished, the rest gets
// finalFlushTimeout to leave, then is dropped.
func (a *Agent) pumpLogs(l *logStream) {
	var (
		timer    *time.Timer
		deadline <-chan time.Time
		closed   = l.closed
		stopping <-chan struct{} // after Close: the agent is stopping, give up now
		pause    *time.Timer     // between chunks
		due      time.Time       // the next chunk's earliest time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if pause != nil {
			pause.Stop()
		}
	}()
	arm := func() {
		if timer == nil {
			timer = time.NewTimer(a.flushTimeout)
			deadline, closed, stopping = timer.C, nil, a.jobsCtx.Done()
		}
	}
	for {
		if l.isClosed() {
			arm()
		}
		s, changed := a.currentSession()
		if s == nil {
			if deadline != nil {
				return
			}
			select {
			case <-changed:
			case <-l.ready:
			}
			continue
		}
		// Let output gather until the next chunk is due. With nothing
		// waiting, the pump waits for output below, with no timer.
		if wait := time.Until(due); wait > 0 && deadline == nil && l.gathering() {
			if pause == nil {
				pause = time.NewTimer(wait)
			} else {
				pause.Reset(wait)
			}
			select {
			case <-pause.C:
			case <-closed:
			case <-l.full:
			case <-changed:
			}
			continue
		}
		msg, ok, finished := l.next()
		if ok {
			select {
			case s.logs <- msg: // the common case, and preferred over giving up
			default:
			send:
				for {
					select {
					case s.logs <- msg:
						break send
					case <-s.done:
						break send
					case <-closed:
						arm()
					case <-deadline:
						return
					case <-stopping:
						return
					}
				}
			}
			if iv := a.cfg.LogFlushInterval; iv > 0 {
				due = time.Now().Add(iv)
			}
		}
		if finished {
			return
		}
		if !ok {
			select {
			case <-l.ready:
			case <-changed:
			case <-deadline:
				return
			}
		}
	}
}
