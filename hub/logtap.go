package hub

import (
	"sync"
	"time"

	"github.com/blacktree/blacktree/console"
	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// Bounds of the log tap: the output of at most logTapJobs jobs, the last
// logTapTailBytes of each (so at most 32 MiB). Of those, at most
// logTapEndedJobs have ended (a page opened just after a job finished
// still shows its output); the oldest ended job goes first, and only when
// every kept job is running does the least recently written one go.
const (
	logTapJobs      = 2048
	logTapEndedJobs = 256
	logTapTailBytes = 16 << 10
)

// logTap keeps the recent output of the jobs this hub runs, for the
// console's job page (console.Logs), which reads it by cursor: nothing is
// pushed to a reader, so a slow browser never holds the Dispatcher back.
// The Dispatcher writes to it under its mu; the tap's mu is a leaf.
type logTap struct {
	mu   sync.Mutex // guards the following and every tappedJob
	jobs map[string]*tappedJob
	// ended holds the ids of the ended entries, oldest first, so that
	// making room is O(1) while a job's first chunk holds the
	// Dispatcher's mu. An id whose entry was replaced by a new run of the
	// same job id may linger; popping it removes only an ended entry.
	ended []string
}

// tappedJob is one job's tail. Chunk i of the job's output (counted from
// 0 as it arrived here) is tail[i-first].
type tappedJob struct {
	tail    []string
	first   uint64 // index of tail[0]
	bytes   int
	end     *console.LogEnd // nil while the job is on this hub
	touched time.Time
	changed chan struct{} // closed and replaced at each write or end
}

func newLogTap() *logTap { return &logTap{jobs: map[string]*tappedJob{}} }

// runningEntryLocked returns jobID's entry for new output. An ended
// entry is replaced: jobLog writes only for a job running on its session,
// so output after an end is a new run of the same job id.
func (t *logTap) runningEntryLocked(jobID string) *tappedJob {
	if tj := t.jobs[jobID]; tj != nil {
		if tj.end == nil {
			return tj
		}
		t.dropLocked(jobID, tj)
	}
	if len(t.jobs) >= logTapJobs && !t.dropOldestEndedLocked() {
		t.dropLeastRecentLocked()
	}
	tj := &tappedJob{changed: make(chan struct{})}
	t.jobs[jobID] = tj
	return tj
}

// dropLocked forgets jobID's entry; a reader waiting on it wakes and
// finds it gone.
func (t *logTap) dropLocked(jobID string, tj *tappedJob) {
	close(tj.changed)
	delete(t.jobs, jobID)
}

// dropOldestEndedLocked forgets the entry that ended first, if any.
func (t *logTap) dropOldestEndedLocked() bool {
	for len(t.ended) > 0 {
		id := t.ended[0]
		t.ended[0] = ""
		t.ended = t.ended[1:]
		if tj := t.jobs[id]; tj != nil && tj.end != nil {
			t.dropLocked(id, tj)
			return true
		}
	}
	return false
}

// dropLeastRecentLocked forgets the running entry written least recently.
// It scans the tap, which happens only while logTapJobs jobs are running
// with output.
func (t *logTap) dropLeastRecentLocked() {
	var victim string
	var oldest time.Time
	for id, tj := range t.jobs {
		if victim == "" || tj.touched.Before(oldest) {
			victim, oldest = id, tj.touched
		}
	}
	if tj := t.jobs[victim]; tj != nil {
		t.dropLocked(victim, tj)
	}
}

func (tj *tappedJob) notifyLocked() {
	tj.touched = time.Now()
	close(tj.changed)
	tj.changed = make(chan struct{})
}

// write appends a chunk of jobID's output, dropping the oldest chunks
// beyond logTapTailBytes.
func (t *logTap) write(jobID, data string) {
	if len(data) > logTapTailBytes {
		data = jobspec.TruncateMiddle(data, logTapTailBytes)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tj := t.runningEntryLocked(jobID)
	tj.tail = append(tj.tail, data)
	tj.bytes += len(data)
	for tj.bytes > logTapTailBytes {
		tj.bytes -= len(tj.tail[0])
		tj.tail[0] = ""
		tj.tail = tj.tail[1:]
		tj.first++
	}
	tj.notifyLocked()
}

// finish ends jobID's output with its status. A job that wrote nothing
// here has no entry and costs nothing.
func (t *logTap) finish(jobID string, resp *blacktreev1.JobResponse) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tj := t.jobs[jobID]; tj != nil && tj.end == nil {
		t.endLocked(jobID, tj, &console.LogEnd{
			Finished: true,
			Success:  resp.GetSuccess(),
			Stage:    failedStage(resp),
			Error:    resp.GetError(),
		})
	}
}

// leave ends jobID's output here without a status: the job left this hub
// (requeued, or adopted by another). A job already finished keeps its end.
func (t *logTap) leave(jobID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tj := t.jobs[jobID]; tj != nil && tj.end == nil {
		t.endLocked(jobID, tj, &console.LogEnd{})
	}
}

// endLocked ends a running entry and keeps at most logTapEndedJobs ended.
func (t *logTap) endLocked(jobID string, tj *tappedJob, end *console.LogEnd) {
	tj.end = end
	tj.notifyLocked()
	t.ended = append(t.ended, jobID)
	if len(t.ended) > logTapEndedJobs {
		t.dropOldestEndedLocked()
	}
}

// LogSince implements console.Logs.
func (t *logTap) LogSince(jobID string, cursor uint64) (console.LogPage, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tj := t.jobs[jobID]
	if tj == nil {
		return console.LogPage{}, false
	}
	page := console.LogPage{End: tj.end, Changed: tj.changed}
	next := tj.first + uint64(len(tj.tail))
	if cursor < tj.first {
		page.Skipped = tj.first - cursor
		cursor = tj.first
	}
	if cursor < next {
		page.Chunks = append([]string(nil), tj.tail[cursor-tj.first:]...)
	}
	page.Next = max(cursor, next)
	return page, true
}

// failedStage names resp's failed stage, "" when it did not fail.
func failedStage(resp *blacktreev1.JobResponse) string {
	if resp.GetSuccess() || resp.GetFailedStage() == blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED {
		return ""
	}
	return jobspec.StageName(resp.GetFailedStage())
}
