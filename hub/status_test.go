package hub

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// brokerLimit is the max_message_size the broker tests lower RabbitMQ to.
const brokerLimit = 1 << 20

// lowerMaxMessageSize sets the broker's max_message_size to n for the
// channels opened from now on, and restores it when the test ends.
func lowerMaxMessageSize(t *testing.T, n int) {
	t.Helper()
	orig, err := cluster.MaxMessageSize()
	if err != nil {
		t.Fatalf("%v; %s", err, startHint)
	}
	if err := cluster.SetMaxMessageSize(n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.SetMaxMessageSize(orig); err != nil {
			t.Errorf("restoring max_message_size %d: %v", orig, err)
		}
	})
}

// sendResult sends a JobResult with the given fields for id.
func (f *fakeWorker) sendResult(resp *blacktreev1.JobResponse) {
	f.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{Response: resp}}})
}

// runJobs publishes n jobs named prefix-i and has w accept them all.
func runJobs(t *testing.T, e *env, h *testHub, w *fakeWorker, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		ids = append(ids, id)
		e.publish(validJob(id))
	}
	for range ids {
		w.accept(w.expectRunJob().GetJobId())
	}
	for _, id := range ids {
		eventually(t, 10*time.Second, id+" running", func() bool { return h.jobState(id) == jobRunning })
	}
	return ids
}

// A result whose status the broker refuses for its size (the hub's
// --max-status-bytes is left at its default, above the lowered broker
// limit) becomes a failed status that says so; the publish is not retried
// forever, and the other jobs' statuses, published at the same time, all
// arrive.
func TestStatusRefusedByBrokerForSize(t *testing.T) {
	lowerMaxMessageSize(t, brokerLimit)
	e := newEnv(t)
	h := e.startHub(nil)
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w", Slots: 64}, false)
	ids := runJobs(t, e, h, w, "size", 41)
	big := map[string]bool{}
	var wg sync.WaitGroup
	for i, id := range ids {
		resp := &blacktreev1.JobResponse{JobId: id, Success: true, Logs: "small", ImageUrl: "reg.example/img:1"}
		if i%10 == 0 { // 5 of them: 3 MiB of logs, three times the broker's limit
			big[id] = true
			resp.Logs = strings.Repeat("log line\n", 3<<20/9)
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.sendResult(resp) }()
	}
	wg.Wait()
	w.expectResultAcks(ids...)
	got := e.waitStatus(ids...)
	for _, id := range ids {
		s := got[id]
		switch {
		case big[id] && (s.GetSuccess() || s.GetImageUrl() != "" || !strings.Contains(s.GetError(), "not published") || !strings.Contains(s.GetError(), "refused")):
			t.Errorf("status of oversized %s = success %v image %q error %q, want a failed status saying the broker refused it", id, s.GetSuccess(), s.GetImageUrl(), s.GetError())
		case !big[id] && (!s.GetSuccess() || s.GetLogs() != "small"):
			t.Errorf("status of %s = success %v logs %q, want the worker's result", id, s.GetSuccess(), s.GetLogs())
		}
	}
	eventually(t, 10*time.Second, "no job in flight", func() bool { return len(h.dispatcher.list()) == 0 })
}

// A hub whose --max-status-bytes is under the broker's limit bounds the
// result to fit: the logs keep their head and their tail (with the error)
// around a marker, and the job's success stands.
func TestStatusBoundedToMaxStatusBytes(t *testing.T) {
	lowerMaxMessageSize(t, brokerLimit)
	e := newEnv(t)
	const maxStatus = 256 << 10
	h := e.startHub(func(c *Config) { c.MaxStatusBytes = maxStatus })
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w", Slots: 4}, false)
	ids := runJobs(t, e, h, w, "bound", 1)
	logs := "HEAD\n" + strings.Repeat("\x01<>&\"", 2<<20/5) + "\nerror: the build failed\n" // escapes to ~5x
	w.sendResult(&blacktreev1.JobResponse{JobId: ids[0], Success: true, Logs: logs, ImageUrl: "reg.example/img:1", Error: strings.Repeat("e", 256<<10)})
	w.expectResultAck(ids[0])
	s := e.waitStatus(ids...)[ids[0]]
	if !s.GetSuccess() || s.GetImageUrl() != "reg.example/img:1" {
		t.Fatalf("status = success %v image %q error %.200q, want the success kept", s.GetSuccess(), s.GetImageUrl(), s.GetError())
	}
	if l := s.GetLogs(); len(l) > maxStatus/8 || !strings.HasPrefix(l, "HEAD\n") || !strings.HasSuffix(l, "error: the build failed\n") || !strings.Contains(l, " bytes truncated …") {
		t.Fatalf("logs of %d bytes (want <= %d, head, marker and tail): %.40q ... %.60q", len(l), maxStatus/8, l, l[max(0, len(l)-60):])
	}
}

// encodeStatus replaces a status whose bounded fields still encode over
// MaxStatusBytes (here: an image URL of control characters, six bytes
// each once escaped) by a failed status that says so.
func TestEncodeStatusTooLarge(t *testing.T) {
	d := &Dispatcher{cfg: Config{MaxStatusBytes: MinMaxStatusBytes}, log: hclog.NewNullLogger()}
	resp := &blacktreev1.JobResponse{
		JobId:       "j-1",
		Success:     true,
		ImageUrl:    strings.Repeat("\x01", jobspec.MaxImageURLBytes),
		ImageDigest: "sha256:" + strings.Repeat("0", 64),
		WorkerId:    "w",
	}
	sent, body, err := d.encodeStatus(resp)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > MinMaxStatusBytes || sent.GetSuccess() || sent.GetImageUrl() != "" || sent.GetWorkerId() != "w" || !strings.Contains(sent.GetError(), "--max-status-bytes") {
		t.Fatalf("encodeStatus = %d bytes, %v", len(body), sent)
	}
}
