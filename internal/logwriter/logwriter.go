// Package logwriter writes a process's log lines to its output in groups.
//
// hclog writes every line with a system call of its own, under a mutex all
// of a process's loggers share. The hub logs a line for every job it
// finishes and a worker two for every job it runs, so at a few thousand
// jobs a second those writes were about a third of the hub's read and write
// system calls and more than half of a worker's (docs/BENCHMARKS.md, G29).
// A Writer keeps info, debug and trace lines for up to an interval and
// writes what gathered in one call; a warning or an error is written at
// once, with the lines before it, so nothing that explains a failure
// waits. Under light load a line still goes out within the interval.
//
// Lines held when the process is killed (SIGKILL, a runtime fatal error)
// are lost: at most one interval's worth of info and debug lines. Close
// writes what is held; the hub and worker commands call it on their way
// out.
package logwriter

import (
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultInterval is how long a line may wait for company by default.
const DefaultInterval = 20 * time.Millisecond

// maxHeld is how many bytes are held before they are written without
// waiting for the interval.
const maxHeld = 64 << 10

// Writer is an hclog.LevelWriter that groups writes of lines below Warn.
// It is safe for concurrent use.
//
// Two mutexes: writeMu orders the writes to out (held across each write
// system call, and taken before mu); mu guards the held bytes and the
// timer, and is never held across a write, so a logger adding a line never
// waits for a write in progress.
type Writer struct {
	out      io.Writer
	interval time.Duration

	writeMu sync.Mutex // serialises writes to out, in the order lines came

	mu     sync.Mutex // guards the following
	held   []byte     // lines not yet written, in order
	spare  []byte     // the buffer of the last write, reused for held (a fifth less CPU per line in BenchmarkInfoLine than a new one each time)
	armed  bool       // timer will fire (or is firing) to write held
	timer  *time.Timer
	closed bool
	err    error // the last write error, reported by Close

	flushes sync.WaitGroup // timer callbacks started and not yet finished
}

// New returns a Writer onto out. An interval of zero or less writes every
// line at once, as out itself would.
func New(out io.Writer, interval time.Duration) *Writer {
	return &Writer{out: out, interval: interval}
}

var _ hclog.LevelWriter = (*Writer)(nil)

// Write writes p at once, after anything held: hclog passes its level to
// LevelWrite, so a plain Write comes from elsewhere and is not delayed.
func (w *Writer) Write(p []byte) (int, error) {
	return w.LevelWrite(hclog.NoLevel, p)
}

// LevelWrite holds p (one formatted line) if level is Info or below, else
// writes it at once together with what is held.
func (w *Writer) LevelWrite(level hclog.Level, p []byte) (int, error) {
	now := w.interval <= 0 || level == hclog.NoLevel || level >= hclog.Warn
	if !now {
		w.mu.Lock()
		if !w.closed {
			w.held = append(w.held, p...)
			if len(w.held) < maxHeld {
				if !w.armed {
					w.armLocked()
				}
				w.mu.Unlock()
				return len(p), nil
			}
			w.mu.Unlock()
			// Held enough: write it all now.
			return len(p), w.writeHeld(nil)
		}
		w.mu.Unlock()
	}
	if err := w.writeHeld(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// armLocked schedules a write of held one interval from now.
func (w *Writer) armLocked() {
	w.armed = true
	w.flushes.Add(1)
	if w.timer == nil {
		w.timer = time.AfterFunc(w.interval, w.fire)
		return
	}
	w.timer.Reset(w.interval)
}

// fire is the timer's callback.
func (w *Writer) fire() {
	defer w.flushes.Done()
	w.mu.Lock()
	w.armed = false
	w.mu.Unlock()
	_ = w.writeHeld(nil) // kept in w.err for Close
}

// writeHeld writes what is held, then p, in one call to out.
func (w *Writer) writeHeld(p []byte) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	w.mu.Lock()
	buf := w.held
	w.held, w.spare = w.spare[:0], nil
	w.mu.Unlock()
	var out []byte
	switch {
	case len(p) == 0:
		out = buf
	case len(buf) == 0:
		out = p // the caller's: written, never kept
	default:
		buf = append(buf, p...)
		out = buf
	}
	var err error
	if len(out) > 0 {
		_, err = w.out.Write(out)
	}
	w.putSpare(buf[:0])
	if err != nil {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	}
	return err
}

// putSpare keeps buf, emptied, for the lines held next, unless it grew
// large in a burst.
func (w *Writer) putSpare(buf []byte) {
	if cap(buf) == 0 || cap(buf) > 2*maxHeld {
		return
	}
	w.mu.Lock()
	if w.spare == nil {
		w.spare = buf
	}
	w.mu.Unlock()
}

// Close writes what is held, and from then on writes every line at once.
// It waits for a timer write in progress and returns the last write error,
// if any. It is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	w.closed = true
	if w.armed && w.timer.Stop() {
		w.armed = false
		w.flushes.Done()
	}
	w.mu.Unlock()
	w.flushes.Wait()
	if err := w.writeHeld(nil); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
