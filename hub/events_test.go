package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// fakeEvents is an EventPublisher that records what it is given; while
// gate is open (non-nil and not closed) PublishEvent blocks on it.
type fakeEvents struct {
	gate chan struct{}
	fail error

	mu   sync.Mutex
	keys []string
	body [][]byte
}

func (f *fakeEvents) EventsEnabled() bool                  { return true }
func (f *fakeEvents) OpenEvents(ctx context.Context) error { return nil }
func (f *fakeEvents) PublishEvent(ctx context.Context, key string, body []byte) error {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.fail != nil {
		return f.fail
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, key)
	f.body = append(f.body, body)
	return nil
}

func (f *fakeEvents) published() ([]string, [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keys...), append([][]byte(nil), f.body...)
}

// runEvents runs p until the test ends.
func runEvents(t *testing.T, p *eventPublisher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func logEvent(jobID string, seq uint64, data string) pendingEvent {
	return pendingEvent{kind: eventLog, jobID: jobID, workerID: "w1", seq: seq, at: time.Now(), chunk: seq - 2, data: data}
}

// A publisher stuck on the broker never blocks offer: events past the
// buffer are dropped and counted, and those buffered go out in order once
// the broker takes them again.
func TestEventBufferDropsWhenFull(t *testing.T) {
	fake := &fakeEvents{gate: make(chan struct{})}
	const capacity = 8
	p := newEventBuffer(fake, "hub-a", capacity, 1<<20, hclog.NewNullLogger())
	runEvents(t, p)

	p.offer(logEvent("job-1", 1, "first"))
	// The goroutine takes the first event and blocks on the gate with it.
	waitFor(t, "the first event to leave the buffer", func() bool { return len(p.queue) == 0 })
	offered := make(chan struct{})
	go func() {
		for i := 2; i <= 1+capacity+5; i++ {
			p.offer(logEvent("job-1", uint64(i), "line"))
		}
		close(offered)
	}()
	select {
	case <-offered:
	case <-time.After(10 * time.Second):
		t.Fatal("offer blocked on a stuck broker")
	}
	if got := counterValue(p.dropped.WithLabelValues(dropBufferFull)); got != 5 {
		t.Fatalf("dropped{buffer_full} = %v, want 5", got)
	}
	close(fake.gate)
	waitFor(t, "the buffered events", func() bool { k, _ := fake.published(); return len(k) == 1+capacity })
	_, bodies := fake.published()
	for i, b := range bodies {
		var ev jobEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d (publish order is offer order)", i, ev.Seq, i+1)
		}
	}
	if got := counterValue(p.published); got != 1+capacity {
		t.Fatalf("published = %v, want %d", got, 1+capacity)
	}
}

// The buffer is bounded in bytes too: large chunks are dropped before the
// count bound is reached, and the bytes are given back as events leave.
func TestEventBufferBoundsBytes(t *testing.T) {
	fake := &fakeEvents{gate: make(chan struct{})}
	p := newEventBuffer(fake, "hub-a", 100, 3*(1024+256), hclog.NewNullLogger())
	big := strings.Repeat("x", 1024)
	for i := 1; i <= 5; i++ {
		p.offer(logEvent("job-1", uint64(i), big))
	}
	if got := counterValue(p.dropped.WithLabelValues(dropBufferFull)); got != 2 {
		t.Fatalf("dropped{buffer_full} = %v, want 2 (3 chunks fit)", got)
	}
	close(fake.gate)
	runEvents(t, p)
	waitFor(t, "the three events", func() bool { k, _ := fake.published(); return len(k) == 3 })
	waitFor(t, "the byte count to return to 0", func() bool { return p.queued.Load() == 0 })
}

// An event the broker does not take is dropped and counted; the next one
// is still tried.
func TestEventPublishFailureIsCounted(t *testing.T) {
	fake := &fakeEvents{fail: errors.New("channel closed")}
	p := newEventBuffer(fake, "hub-a", 8, 1<<20, hclog.NewNullLogger())
	runEvents(t, p)
	p.offer(logEvent("job-1", 2, "a"))
	p.offer(logEvent("job-1", 3, "b"))
	waitFor(t, "two broker drops", func() bool { return counterValue(p.dropped.WithLabelValues(dropBroker)) == 2 })
}

// The JSON body carries the documented fields: time in RFC 3339 with
// microseconds, a log's data and chunk, a finished event's JobResponse in
// its status.queue form; the routing key is job.<jobId>.<event>.
func TestEventEncoding(t *testing.T) {
	fake := &fakeEvents{}
	p := newEventBuffer(fake, "hub-a", 8, 1<<20, hclog.NewNullLogger())
	runEvents(t, p)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p.offer(pendingEvent{kind: eventAccepted, jobID: "job-1", workerID: "w1", seq: 1, at: at})
	p.offer(pendingEvent{kind: eventLog, jobID: "job-1", workerID: "w1", seq: 2, at: at, chunk: 0, data: "hello\n"})
	resp := &blacktreev1.JobResponse{JobId: "job-1", Success: true, WorkerId: "w1", ImageUrl: "r/i:t"}
	p.offer(pendingEvent{kind: eventFinished, jobID: "job-1", workerID: "w1", seq: 3, at: at, resp: resp})
	waitFor(t, "three events", func() bool { k, _ := fake.published(); return len(k) == 3 })
	keys, bodies := fake.published()
	if want := []string{"job.job-1.accepted", "job.job-1.log", "job.job-1.finished"}; strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("routing keys = %v, want %v", keys, want)
	}
	var acc map[string]any
	if err := json.Unmarshal(bodies[0], &acc); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"jobId": "job-1", "event": "accepted", "workerId": "w1", "hubId": "hub-a", "seq": float64(1), "time": "2026-01-02T03:04:05.000000Z"} {
		if acc[k] != want {
			t.Errorf("accepted[%q] = %v, want %v", k, acc[k], want)
		}
	}
	if _, has := acc["data"]; has {
		t.Errorf("accepted event has data: %s", bodies[0])
	}
	var lg jobEvent
	if err := json.Unmarshal(bodies[1], &lg); err != nil {
		t.Fatal(err)
	}
	if lg.Data != "hello\n" || lg.Chunk == nil || *lg.Chunk != 0 {
		t.Errorf("log event = %s, want data hello and chunk 0", bodies[1])
	}
	var fin struct {
		Response map[string]any `json:"response"`
	}
	if err := json.Unmarshal(bodies[2], &fin); err != nil {
		t.Fatal(err)
	}
	if fin.Response["success"] != true || fin.Response["imageUrl"] != "r/i:t" || fin.Response["logs"] != "" {
		t.Errorf("finished response = %v, want the status.queue form (scalars present)", fin.Response)
	}
}
