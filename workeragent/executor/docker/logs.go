package docker

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/redact"
)

// jobOutput is one job's human-readable output. Every line is scrubbed of
// the job's secrets (internal/redact), then written to the agent's writer
// and kept, head and tail, to become JobResponse.logs.
type jobOutput struct {
	secrets *redact.Secrets

	mu      sync.Mutex // guards the following
	w       io.Writer
	head    []byte // the first max/3 bytes
	buf     []byte // the latest bytes: at most 2*max, at least max once trimmed
	written int    // bytes written in all
	max     int
}

func newJobOutput(w io.Writer, max int, token string) *jobOutput {
	if w == nil {
		w = io.Discard
	}
	return &jobOutput{w: w, max: max, secrets: redact.New(token)}
}

// scrub removes the job's secrets (and their encodings) from s.
func (o *jobOutput) scrub(s string) string { return o.secrets.Scrub(s) }

// write scrubs s and emits it. Callers pass whole lines (lineWriter cuts
// an endless one) so a secret is never split across two writes.
func (o *jobOutput) write(s string) {
	s = o.scrub(s)
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = io.WriteString(o.w, s) // the agent's stream; a failure there must not fail the job
	if n := min(len(s), o.max/3-len(o.head)); n > 0 {
		o.head = append(o.head, s[:n]...)
	}
	o.written += len(s)
	o.buf = append(o.buf, s...)
	if len(o.buf) > 2*o.max {
		o.buf = append(o.buf[:0], o.buf[len(o.buf)-o.max:]...)
	}
}

func (o *jobOutput) printf(format string, args ...any) { o.write(fmt.Sprintf(format, args...)) }

// kept is the output bounded to max bytes: all of it, or its head and tail
// around a "… N bytes truncated …" marker (jobspec.TruncateMiddle), on
// rune boundaries, scrubbed again and valid UTF-8 (protojson refuses
// anything else).
func (o *jobOutput) kept() string {
	o.mu.Lock()
	var s string
	if o.written <= len(o.buf) { // nothing dropped yet
		s = jobspec.TruncateMiddle(string(o.buf), o.max)
	} else {
		tail := o.buf[len(o.buf)-min(len(o.buf), o.max):]
		s = jobspec.TruncateMiddleCut(string(o.head)+string(tail), o.max, o.written-len(o.head)-len(tail))
	}
	o.mu.Unlock()
	return strings.ToValidUTF8(o.scrub(s), "\uFFFD")
}
