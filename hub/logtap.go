package hub

import (
	"sync"
	"time"

	"github.com/blacktree/blacktree/console"
	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// Bounds of the log tap: the output of at most logTapJobs jobs, the last
// logTapTailBytes of each (so at most 32 MiB), with ended jobs evicted
// first and then the least recently written.
const (
	logTapJobs      = 2048
	logTapTailBytes = 16 << 10
)

// logTap keeps the recent output of the jobs this hub runs, for the
// console's job page (console.Logs), which reads it by cursor: nothing is
// pushed to a reader, so a slow browser never holds the Dispatcher back.
// The Dispatcher writes to it under its mu; the tap's mu is a leaf.
type logTap struct {
	mu   sync.Mutex // guards jobs and every tappedJob
	jobs map[string]*tappedJob
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

// entryLocked returns jobID's entry, making room for a new one.
func (t *logTap) entryLocked(jobID string) *tappedJob {
	if tj := t.jobs[jobID]; tj != nil {
		return tj
	}
	if len(t.jobs) >= logTapJobs {
		t.evictLocked()
	}
	tj := &tappedJob{changed: make(chan struct{})}
	t.jobs[jobID] = tj
	return tj
}

// evictLocked drops the ended job written least recently, or the running
// one when none has ended.
func (t *logTap) evictLocked() {
	var victim string
	var victimEnded bool
	var oldest time.Time
	for id, tj := range t.jobs {
		ended := tj.end != nil
		better := victim == "" || ended && !victimEnded || ended == victimEnded && tj.touched.Before(oldest)
		if better {
			victim, victimEnded, oldest = id, ended, tj.touched
		}
	}
	if tj := t.jobs[victim]; tj != nil {
		close(tj.changed)
		delete(t.jobs, victim)
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
	tj := t.entryLocked(jobID)
	if tj.end != nil {
		return
	}
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

// finish ends jobID's output with its status.
func (t *logTap) finish(jobID string, resp *blacktreev1.JobResponse) {
	t.endWith(jobID, &console.LogEnd{
		Finished: true,
		Success:  resp.GetSuccess(),
		Stage:    failedStage(resp),
		Error:    resp.GetError(),
	})
}

// leave ends jobID's output here without a status: the job left this hub
// (requeued, or adopted by another). A job already finished keeps its end.
func (t *logTap) leave(jobID string) {
	t.endWith(jobID, &console.LogEnd{})
}

func (t *logTap) endWith(jobID string, end *console.LogEnd) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tj := t.jobs[jobID]
	if tj == nil || tj.end != nil {
		return
	}
	tj.end = end
	tj.notifyLocked()
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
