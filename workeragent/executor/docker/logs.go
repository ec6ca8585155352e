package docker

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/blacktree/blacktree/internal/redact"
)

// jobOutput is one job's human-readable output. Every line is scrubbed of
// the job's secrets (internal/redact), then written to the agent's writer
// and kept in a tail buffer that becomes JobResponse.logs.
type jobOutput struct {
	secrets *redact.Secrets

	mu  sync.Mutex // guards the following
	w   io.Writer
	buf []byte
	max int
}

func newJobOutput(w io.Writer, max int, token string) *jobOutput {
	if w == nil {
		w = io.Discard
	}
	return &jobOutput{w: w, max: max, secrets: redact.New(token)}
}

// scrub removes the job's secrets (and their encodings) from s.
func (o *jobOutput) scrub(s string) string { return o.secrets.Scrub(s) }

// write scrubs s and emits it. Callers pass whole lines so a secret is
// never split across two writes.
func (o *jobOutput) write(s string) {
	s = o.scrub(s)
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = io.WriteString(o.w, s) // the agent's stream; a failure there must not fail the job
	o.buf = append(o.buf, s...)
	if len(o.buf) > 2*o.max {
		o.buf = append(o.buf[:0], o.buf[len(o.buf)-o.max:]...)
	}
}

func (o *jobOutput) printf(format string, args ...any) { o.write(fmt.Sprintf(format, args...)) }

// tail is the last max bytes of output, starting on a rune boundary,
// scrubbed again and valid UTF-8 (protojson refuses anything else).
func (o *jobOutput) tail() string {
	o.mu.Lock()
	b := o.buf
	if len(b) > o.max {
		b = b[len(b)-o.max:]
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	s := string(b)
	o.mu.Unlock()
	return strings.ToValidUTF8(o.scrub(s), "\uFFFD")
}
