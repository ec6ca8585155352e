package workeragent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/redact"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// drain reads every chunk from a closed logStream.
func drainChunks(t *testing.T, l *logStream) []*blacktreev1.JobLog {
	t.Helper()
	var out []*blacktreev1.JobLog
	for {
		m, ok, finished := l.next()
		if ok {
			out = append(out, m.GetJobLog())
		}
		if finished {
			return out
		}
		if !ok {
			t.Fatalf("next() = nothing, not finished, on a closed stream")
		}
	}
}

func TestLogStreamScrubsAcrossWrites(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
	}{
		{name: "token in one write", writes: []string{"clone with " + testToken + " ok\n"}},
		{name: "token split in two", writes: []string{"clone with " + testToken[:7], testToken[7:] + " ok\n"}},
		{name: "token byte by byte", writes: strings.Split("a"+testToken+"b", "")},
		{name: "token at the very end", writes: []string{"tail ", testToken}},
		{name: "near miss then token", writes: []string{testToken[:5] + "X " + testToken[:5], testToken[5:]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLogStream("j", redact.New(testToken), 1<<20)
			var got strings.Builder
			for _, w := range tt.writes {
				if _, err := l.Write([]byte(w)); err != nil {
					t.Fatalf("Write() error = %v", err)
				}
				// Interleave chunking with writes, as the pump does.
				if m, ok, _ := l.next(); ok {
					got.WriteString(m.GetJobLog().GetData())
				}
			}
			l.Close()
			for _, c := range drainChunks(t, l) {
				got.WriteString(c.GetData())
			}
			want := redact.New(testToken).Scrub(strings.Join(tt.writes, ""))
			if got.String() != want {
				t.Errorf("streamed output = %q, want %q", got.String(), want)
			}
			if strings.Contains(got.String(), testToken[:8]) {
				t.Errorf("streamed output %q contains part of the token", got.String())
			}
		})
	}
}

func TestLogStreamBounded(t *testing.T) {
	const limit = 128 << 10
	l := newLogStream("j", redact.New(testToken), limit)
	line := strings.Repeat("x", 1000) + "\n"
	for i := 0; i < 1000; i++ { // ~1 MB into a 128 KiB buffer, nobody reading
		l.Write([]byte(line))
	}
	l.Close()
	chunks := drainChunks(t, l)
	var total int
	var all strings.Builder
	for i, c := range chunks {
		if got := c.GetSeq(); got != uint64(i) {
			t.Errorf("chunk %d seq = %d, want %d", i, got, i)
		}
		if len(c.GetData()) > MaxLogChunk {
			t.Errorf("chunk %d is %d bytes, want <= %d", i, len(c.GetData()), MaxLogChunk)
		}
		total += len(c.GetData())
		all.WriteString(c.GetData())
	}
	if total > limit+200 {
		t.Errorf("buffered output = %d bytes, want about %d at most", total, limit)
	}
	if !strings.Contains(all.String(), "bytes of output dropped") {
		t.Errorf("output has no drop note; tail = %q", all.String()[max(0, all.Len()-200):])
	}
}

func TestLogStreamValidUTF8Chunks(t *testing.T) {
	l := newLogStream("j", redact.New(), 1<<20)
	l.Write([]byte(strings.Repeat("é", MaxLogChunk))) // 2 bytes each
	l.Write([]byte{0xff, 0xfe, '\n'})
	l.Close()
	for i, c := range drainChunks(t, l) {
		if !utf8.ValidString(c.GetData()) {
			t.Errorf("chunk %d is not valid UTF-8", i)
		}
	}
}

// echoExec prints the job's token (in pieces and whole, past several chunk
// boundaries) and returns it in the logs and the error.
type echoExec struct{}

func (echoExec) Name() string { return "echo" }

func (echoExec) Run(_ context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	tok := req.GetGithubToken()
	fmt.Fprintf(logs, "using token %s\n", tok)
	logs.Write([]byte("split " + tok[:10]))
	logs.Write([]byte(tok[10:] + "\n"))
	filler := strings.Repeat("y", MaxLogChunk-7)
	fmt.Fprintf(logs, "%s%s\n", filler, tok) // straddles a chunk boundary
	return &blacktreev1.JobResponse{
		JobId: req.GetJobId(),
		Logs:  "final logs " + tok,
		Error: "clone: https://x:" + tok + "@github.com failed",
	}
}

func TestTokenScrubbed(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	r := startAgent(t, Config{HubAddrs: []string{hub.Addr}}, echoExec{})
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("echo")))
	var streamed strings.Builder
	var seqs []uint64
	res := s.WaitFor(t, wait, "JobResult", func(m *blacktreev1.WorkerMessage) bool {
		if l := m.GetJobLog(); l != nil {
			streamed.WriteString(l.GetData())
			seqs = append(seqs, l.GetSeq())
			if len(l.GetData()) > MaxLogChunk {
				t.Errorf("JobLog chunk of %d bytes, want <= %d", len(l.GetData()), MaxLogChunk)
			}
		}
		return fakehub.IsResult("echo")(m)
	}).GetJobResult().GetResponse()
	s.Send(t, fakehub.Ack("echo"))

	for i, seq := range seqs {
		if seq != uint64(i) {
			t.Errorf("JobLog seqs = %v, want 0, 1, 2, ...", seqs)
			break
		}
	}
	if got := strings.Count(streamed.String(), redact.Placeholder); got != 3 {
		t.Errorf("JobLog data has %d %s markers, want 3", got, redact.Placeholder)
	}
	for what, text := range map[string]string{
		"JobLog data": streamed.String(), "JobResponse.logs": res.GetLogs(),
		"JobResponse.error": res.GetError(), "agent log": r.logs.String(),
	} {
		if strings.Contains(text, testToken) || strings.Contains(text, testToken[:12]) {
			t.Errorf("%s contains the token", what)
		}
	}
	if !strings.Contains(res.GetError(), redact.Placeholder) {
		t.Errorf("JobResponse.error = %q, want the token replaced by %s", res.GetError(), redact.Placeholder)
	}
}

// floodExec writes far more output than the agent buffers, then reports
// when it returned.
type floodExec struct {
	bytes    int
	returned chan struct{}
	hang     bool // then wait for cancellation
}

func (floodExec) Name() string { return "flood" }

func (f floodExec) Run(ctx context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	line := strings.Repeat("z", 1023) + "\n"
	for n := 0; n < f.bytes; n += len(line) {
		logs.Write([]byte(line))
	}
	close(f.returned)
	if f.hang {
		<-ctx.Done()
		return &blacktreev1.JobResponse{JobId: req.GetJobId(), Error: "cancelled: " + context.Cause(ctx).Error()}
	}
	return &blacktreev1.JobResponse{JobId: req.GetJobId(), Success: true, ImageUrl: req.GetImageName()}
}

func TestSlowHubDoesNotBlockJob(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
	ex := floodExec{bytes: 16 << 20, returned: make(chan struct{})}
	startAgent(t, Config{HubAddrs: []string{hub.Addr}, LogBufferBytes: 256 << 10}, ex,
		func(a *Agent) { a.flushTimeout = 100 * time.Millisecond })
	s := hub.NextStream(t, wait)
	s.Pause() // the hub reads nothing while the job runs
	s.Send(t, fakehub.RunJob(jobReq("flood")))
	select {
	case <-ex.returned:
	case <-time.After(wait):
		t.Fatalf("executor still writing after %s: a stalled hub blocks the job", wait)
	}
	s.Resume()
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("flood"))
	var streamed int
	var note bool
	s.WaitFor(t, wait, "JobResult", func(m *blacktreev1.WorkerMessage) bool {
		if l := m.GetJobLog(); l != nil {
			streamed += len(l.GetData())
			note = note || strings.Contains(l.GetData(), "bytes of output dropped")
		}
		return fakehub.IsResult("flood")(m)
	})
	s.Send(t, fakehub.Ack("flood"))
	if streamed >= ex.bytes {
		t.Errorf("streamed %d bytes of %d while the hub stalled, want some dropped", streamed, ex.bytes)
	}
	if !note && streamed > 0 {
		t.Logf("no drop note arrived (it may have been cut by the final flush bound)")
	}
}

func TestStopWithStalledHub(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
	ex := floodExec{bytes: 8 << 20, returned: make(chan struct{}), hang: true}
	r := startAgent(t, Config{HubAddrs: []string{hub.Addr}}, ex)
	s := hub.NextStream(t, wait)
	s.Pause()
	s.Send(t, fakehub.RunJob(jobReq("stalled")))
	select {
	case <-ex.returned:
	case <-time.After(wait):
		t.Fatalf("executor still writing after %s", wait)
	}
	// Every queue towards the stalled hub is full; stopping must not hang.
	if err := r.stop(t); !errors.Is(err, ErrAborted) {
		t.Errorf("Run() = %v, want ErrAborted (the result is kept for the next start)", err)
	}
}

// chattyExec writes bulk bytes at once, then lines one every `every`, then
// waits for gate (if any), like a build printing as it goes.
type chattyExec struct {
	bulk  int
	lines int
	every time.Duration
	gate  chan struct{}
	took  chan time.Duration // cap 1: how long the output took
}

func (chattyExec) Name() string { return "chatty" }

func (c chattyExec) Run(ctx context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	start := time.Now()
	if c.bulk > 0 {
		logs.Write([]byte(strings.Repeat("b", c.bulk-1) + "\n"))
	}
	for i := range c.lines {
		time.Sleep(c.every)
		fmt.Fprintf(logs, "line %d\n", i)
	}
	c.took <- time.Since(start)
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
		}
	}
	return &blacktreev1.JobResponse{JobId: req.GetJobId(), Success: true, ImageUrl: req.GetImageName()}
}

func TestLogFlushInterval(t *testing.T) {
	var want strings.Builder
	for i := range 200 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	tests := []struct {
		name     string
		interval time.Duration
		gathered bool // at most one chunk per interval, else one per line or so
	}{
		{name: "100ms", interval: 100 * time.Millisecond, gathered: true},
		{name: "every write", interval: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
			ex := chattyExec{lines: 200, every: time.Millisecond, took: make(chan time.Duration, 1)}
			startAgent(t, Config{HubAddrs: []string{hub.Addr}, LogFlushInterval: tt.interval}, ex)
			s := hub.NextStream(t, wait)
			s.Send(t, fakehub.RunJob(jobReq("chatty")))
			var streamed strings.Builder
			chunks := 0
			s.WaitFor(t, wait, "JobResult", func(m *blacktreev1.WorkerMessage) bool {
				if l := m.GetJobLog(); l != nil {
					streamed.WriteString(l.GetData())
					chunks++
				}
				return fakehub.IsResult("chatty")(m)
			})
			s.Send(t, fakehub.Ack("chatty"))
			took := <-ex.took
			if !strings.HasSuffix(streamed.String(), want.String()) {
				t.Errorf("JobLog data = %q, want it to end with the 200 lines in order", streamed.String())
			}
			// One chunk at once, then one per interval, and the rest at
			// the end.
			most := int(took/(100*time.Millisecond)) + 2
			if tt.gathered && chunks > most {
				t.Errorf("%d JobLog chunks for %s of output, want at most %d", chunks, took, most)
			}
			if !tt.gathered && chunks <= most {
				t.Errorf("%d JobLog chunks for %s of output, want more than %d (one per write or so)", chunks, took, most)
			}
			if testing.Verbose() {
				t.Logf("%d chunks in %s", chunks, took)
			}
		})
	}
}

// TestLogFlushIntervalDoesNotHold: the first output and whole chunks leave
// while the job runs, however long the interval.
func TestLogFlushIntervalDoesNotHold(t *testing.T) {
	tests := []struct {
		name       string
		bulk       int
		wantChunks int
	}{
		{name: "first output at once", bulk: 10, wantChunks: 1},
		{name: "whole chunks at once", bulk: 3 * MaxLogChunk, wantChunks: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
			ex := chattyExec{bulk: tt.bulk, gate: make(chan struct{}), took: make(chan time.Duration, 1)}
			startAgent(t, Config{HubAddrs: []string{hub.Addr}, LogFlushInterval: time.Hour}, ex)
			s := hub.NextStream(t, wait)
			s.Send(t, fakehub.RunJob(jobReq("held")))
			streamed, chunks := 0, 0
			s.WaitFor(t, wait, fmt.Sprintf("%d JobLog chunks while the job runs", tt.wantChunks), func(m *blacktreev1.WorkerMessage) bool {
				if l := m.GetJobLog(); l != nil {
					streamed += len(l.GetData())
					chunks++
				}
				return chunks >= tt.wantChunks
			})
			if streamed < tt.bulk-MaxLogChunk {
				t.Errorf("streamed %d bytes while the job runs, want at least %d", streamed, tt.bulk-MaxLogChunk)
			}
			close(ex.gate)
			s.WaitFor(t, wait, "JobResult", fakehub.IsResult("held"))
			s.Send(t, fakehub.Ack("held"))
		})
	}
}
