package redact

import (
	"io"
	"slices"
	"strings"
	"sync"
)

// StreamWriter scrubs what is written to it and passes the result on to
// an underlying writer. A secret split across Write calls is caught: the
// tail of the data that could still grow into a secret is held back until
// the next Write, Flush or Close. Safe for concurrent use; each Write is
// scrubbed as a unit, in the order the calls take the lock.
//
// Secrets added to the set after the writer was made are honoured from the
// next Write on.
type StreamWriter struct {
	secrets *Secrets
	w       io.Writer

	mu          sync.Mutex // guards the following
	pending     []byte     // held back: a proper prefix of some pattern
	pendingMask []bool     // nil, or which pending bytes are already in a match
	prevMasked  bool       // the output so far ends with Placeholder
	closed      bool
	err         error // sticky error from w
}

// Writer returns an io.Writer that scrubs everything written to it before
// passing it to w. Its dynamic type is *StreamWriter: call Close (or Flush)
// when done, or the held-back tail is never written. See Stream for the
// typed form.
func (s *Secrets) Writer(w io.Writer) io.Writer { return s.Stream(w) }

// Stream returns a *StreamWriter that scrubs everything written to it
// before passing it to w. With a nil or empty set it still works (and still
// needs Close, as secrets may be added later).
func (s *Secrets) Stream(w io.Writer) *StreamWriter {
	return &StreamWriter{secrets: s, w: w}
}

// Write scrubs p and writes what is safe to emit. It returns len(p) unless
// the underlying writer fails; then that error, and every later call
// returns it too. Writing after Close returns io.ErrClosedPipe.
func (sw *StreamWriter) Write(p []byte) (int, error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return 0, io.ErrClosedPipe
	}
	if sw.err != nil {
		return 0, sw.err
	}
	patterns, _ := sw.secrets.snapshot()
	buf := append(sw.pending, p...)
	text := string(buf)
	var mask []bool
	if sw.pendingMask != nil {
		mask = make([]bool, len(text))
		copy(mask, sw.pendingMask)
	}
	mask = markMatches(text, patterns, mask)
	// Everything before cut is final: any match that starts before it is
	// complete in buf (a match still growing would make buf[start:] a
	// proper prefix of a pattern, so start >= cut). Held-back bytes keep
	// their marks, so a match that covers both sides of cut is still one
	// Placeholder and later matches starting in the tail are still found:
	// the output is exactly Scrub of everything written.
	cut := len(text) - holdback(buf, patterns)
	if err := sw.emitLocked(text[:cut], maskPrefix(mask, cut)); err != nil {
		return 0, err
	}
	sw.pending = append(sw.pending[:0], buf[cut:]...)
	sw.pendingMask = nil
	if mask != nil && slices.Contains(mask[cut:], true) {
		sw.pendingMask = slices.Clone(mask[cut:])
	}
	return len(p), nil
}

func maskPrefix(mask []bool, n int) []bool {
	if mask == nil {
		return nil
	}
	return mask[:n]
}

func (sw *StreamWriter) emitLocked(text string, mask []bool) error {
	if text == "" {
		return nil
	}
	var b strings.Builder
	sw.prevMasked = render(&b, text, mask, sw.prevMasked)
	if b.Len() == 0 {
		return nil
	}
	if _, err := io.WriteString(sw.w, b.String()); err != nil {
		sw.err = err
		return err
	}
	return nil
}

// Flush writes the held-back tail, scrubbed. Call it when no more data will
// follow for a while (a secret split across a Flush is not caught).
func (sw *StreamWriter) Flush() error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.flushLocked()
}

func (sw *StreamWriter) flushLocked() error {
	if sw.err != nil {
		return sw.err
	}
	patterns, _ := sw.secrets.snapshot()
	text := string(sw.pending)
	mask := markMatches(text, patterns, sw.pendingMask)
	sw.pending, sw.pendingMask = sw.pending[:0], nil
	return sw.emitLocked(text, mask)
}

// Close flushes the held-back tail and makes later Writes fail. It does not
// close the underlying writer. Close is idempotent.
func (sw *StreamWriter) Close() error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return nil
	}
	sw.closed = true
	return sw.flushLocked()
}
