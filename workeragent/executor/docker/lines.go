package docker

import (
	"bytes"

	"github.com/blacktree/blacktree/internal/jobspec"
)

// maxLineBytes caps one line of a job's output. A longer line is cut
// there and the rest of it, up to its newline, is counted and dropped, so
// a build printing one endless line costs the worker flat memory.
const maxLineBytes = 64 << 10

// lineSplitter splits a job's output into lines for jobOutput.write,
// holding at most maxLineBytes of an unfinished line. Not safe for
// concurrent use: its owner serialises calls.
type lineSplitter struct {
	out *jobOutput
	// ends are the bytes that end a line ("\n", or "\r\n" for the
	// classic builder's progress bars).
	ends string
	// emit handles one whole line, without its end byte (set by the
	// classic builder, which parses lines); nil writes it, newline
	// added, to out.
	emit func(line string)

	pending []byte // the current line's start, at most maxLineBytes
	dropped int    // bytes of the current line dropped past the cap
}

// write feeds b.
func (s *lineSplitter) write(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexAny(b, s.ends)
		if s.dropped > 0 {
			if i < 0 {
				s.dropped += len(b)
				return
			}
			s.dropped += i
			s.endLine()
			b = b[i+1:]
			continue
		}
		end := len(b)
		if i >= 0 {
			end = i
		}
		if room := maxLineBytes - len(s.pending); end > room {
			// Too long: emit the cap's worth, less any tail that could be
			// the start of a secret (the rest of the line is dropped, so
			// a secret straddling the cut never shows).
			s.pending = append(s.pending, b[:room]...)
			keep := len(s.pending) - s.out.secrets.Holdback(s.pending)
			s.dropped = len(s.pending) - keep + 1 // at least the byte past the cap
			s.pending = s.pending[:keep]
			b = b[room+1:]
			continue
		}
		s.pending = append(s.pending, b[:end]...)
		if i < 0 {
			return
		}
		s.endLine()
		b = b[i+1:]
	}
}

// endLine emits the current line, with a marker if it was cut.
func (s *lineSplitter) endLine() {
	line := string(s.pending)
	if s.dropped > 0 {
		line += " " + jobspec.TruncatedNote(s.dropped)
	}
	s.pending, s.dropped = s.pending[:0], 0
	if s.emit != nil {
		if line != "" {
			s.emit(line)
		}
		return
	}
	s.out.write(line + "\n")
}

// flush emits an unfinished line.
func (s *lineSplitter) flush() {
	if len(s.pending) > 0 || s.dropped > 0 {
		s.endLine()
	}
}
