package docker

import (
	"context"
	"regexp"
	"strings"
	"sync"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"
)

// stepCount is how many of a build's Dockerfile steps BuildKit answered
// from its cache, out of all it solved (JobResponse.cached_steps and
// total_steps).
type stepCount struct {
	cached, total int
}

// dockerfileStepRe matches the vertex names the Dockerfile frontend gives
// to instructions: "[2/3] RUN ...", "[build 1/4] COPY ...". FROM steps are
// not counted: they resolve an image and do no work of their own.
var dockerfileStepRe = regexp.MustCompile(`^\[(?:[^\]]* )?\d+/\d+\] (\S+)`)

type vertexState struct {
	name   string
	step   bool
	cached bool
	err    string
}

// progress follows one solve: it prints BuildKit's plain progress (step
// names, CACHED markers, durations, the output of RUN steps) to the job's
// output, and keeps each vertex's state for the step counts and for naming
// the step that failed.
type progress struct {
	out *jobOutput

	mu       sync.Mutex // guards the following
	vertexes map[digest.Digest]*vertexState
	order    []digest.Digest
}

func newProgress(out *jobOutput) *progress {
	return &progress{out: out, vertexes: map[digest.Digest]*vertexState{}}
}

// run reads status until it is closed (Solve closes it when it returns).
// The display's goroutine is owned here and ended before run returns.
func (p *progress) run(status <-chan *bkclient.SolveStatus) {
	lines := newLineWriter(p.out)
	defer lines.flush()
	display, err := progressui.NewDisplay(lines, progressui.PlainMode)
	if err != nil { // only for an unknown mode: a programming error
		p.out.printf("build: progress display: %v\n", err)
		for s := range status {
			p.record(s)
		}
		return
	}
	forward := make(chan *bkclient.SolveStatus)
	displayed := make(chan struct{})
	go func() {
		defer close(displayed)
		// The display returns when forward is closed; its context never ends.
		_, _ = display.UpdateFrom(context.Background(), forward)
	}()
	for s := range status {
		p.record(s)
		forward <- s
	}
	close(forward)
	<-displayed
}

func (p *progress) record(s *bkclient.SolveStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range s.Vertexes {
		st := p.vertexes[v.Digest]
		if st == nil {
			st = &vertexState{}
			p.vertexes[v.Digest] = st
			p.order = append(p.order, v.Digest)
		}
		if v.Name != "" {
			st.name = v.Name
			m := dockerfileStepRe.FindStringSubmatch(v.Name)
			st.step = m != nil && !strings.EqualFold(m[1], "FROM")
		}
		st.cached = st.cached || v.Cached
		if v.Error != "" {
			st.err = v.Error
		}
	}
}

// steps counts the Dockerfile steps seen so far and those answered from
// the cache.
func (p *progress) steps() stepCount {
	p.mu.Lock()
	defer p.mu.Unlock()
	var c stepCount
	for _, st := range p.vertexes {
		if !st.step {
			continue
		}
		c.total++
		if st.cached {
			c.cached++
		}
	}
	return c
}

// started reports whether the solve got as far as a vertex: if not, the
// engine refused the build before running any of it.
func (p *progress) started() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.vertexes) > 0
}

// failedStep names the first Dockerfile step that failed for a reason of
// its own (not because the solve was cancelled after another failure).
func (p *progress) failedStep() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fallback := ""
	for _, d := range p.order {
		st := p.vertexes[d]
		if st.err == "" || !st.step {
			continue
		}
		if !strings.Contains(st.err, "context canceled") {
			return st.name, true
		}
		if fallback == "" {
			fallback = st.name
		}
	}
	return fallback, fallback != ""
}

// lineWriter hands whole lines to the job's output, which scrubs each of
// the job's secrets: a secret never straddles two writes. A line longer
// than maxLineBytes is cut (lineSplitter).
type lineWriter struct {
	mu    sync.Mutex // guards lines
	lines lineSplitter
}

func newLineWriter(out *jobOutput) *lineWriter {
	return &lineWriter{lines: lineSplitter{out: out, ends: "\n"}}
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines.write(b)
	return len(b), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines.flush()
}
