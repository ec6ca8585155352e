package workeragent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/workeragent/executor"
)

// The job journal (docs/design/worker-journal.md): one JSON record a
// line, appended to the state directory's journalFile with one write(2)
// each and no fsync, so that a killed agent (kill -9) loses none of it;
// journalSyncInterval bounds what a machine crash can lose.
const (
	journalFile = "jobs.journal"
	// journalCompactAfter is how many records are appended between two
	// rewrites of the file down to the jobs still running.
	journalCompactAfter = 1024
	// journalSyncInterval is how often Run fsyncs a journal written to
	// since the last fsync.
	journalSyncInterval = time.Second
)

// The journal's record kinds.
const (
	journalRun   = "run"   // the job is accepted and runs here
	journalStage = "stage" // the running job entered Stage
	journalDone  = "done"  // the job's result is held (or it never ran)
)

// journalRecord is one line of the journal. A run record carries
// everything a restarted agent needs to report the job: its id, its
// dispatch ticket (so that the hub takes the report,
// docs/protocol.md#ownership), its start and, with later stage records,
// the stage it reached.
type journalRecord struct {
	Op      string               `json:"op"`
	JobID   string               `json:"job"`
	Ticket  string               `json:"ticket,omitempty"`
	Stage   blacktreev1.JobStage `json:"stage,omitempty"`
	Started time.Time            `json:"started,omitzero"`
}

// journal records the jobs running here, so that an agent restarted on
// the same state directory reports each as interrupted at once instead of
// leaving it to the hub's lost-worker grace. A journal whose f is nil
// (no state directory, Config.DisableJournal, or closed) records nothing.
// mu is a leaf lock: nothing else is taken under it.
type journal struct {
	path string
	log  hclog.Logger

	mu       sync.Mutex // guards the following
	f        *os.File   // open for appending; nil when not recording
	running  map[string]*journalRecord
	appended int  // records appended since the file was last rewritten
	dirty    bool // written since the last fsync
}

// openJournal reads the journal left in dir by an earlier run and returns
// it, still to be started (journal.start), with the jobs that earlier run
// left running, in the order they were accepted. Unreadable lines are
// logged and skipped. An empty dir gives a journal that records nothing.
func openJournal(dir string, log hclog.Logger) (*journal, []journalRecord, error) {
	j := &journal{
		log:     log,
		running: map[string]*journalRecord{},
	}
	if dir == "" {
		return j, nil, nil
	}
	j.path = filepath.Join(dir, journalFile)
	b, err := os.ReadFile(j.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("state dir: read journal: %w", err)
	}
	return j, replayJournal(b, log), nil
}

// replayJournal returns the jobs b leaves running, in the order of their
// run records.
func replayJournal(b []byte, log hclog.Logger) []journalRecord {
	running := map[string]journalRecord{}
	var order []string
	r := bufio.NewReader(bytes.NewReader(b))
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var rec journalRecord
			switch uerr := json.Unmarshal(line, &rec); {
			case uerr != nil || rec.JobID == "":
				// A line cut short by a machine crash, or damage: the
				// job it named (if any) is left to the hub's grace.
				log.Error("state dir: journal line unreadable; skipping it", "file", journalFile, "line", n, "bytes", len(line))
			case rec.Op == journalRun:
				if _, ok := running[rec.JobID]; !ok {
					order = append(order, rec.JobID)
				}
				running[rec.JobID] = rec
			case rec.Op == journalStage:
				if cur, ok := running[rec.JobID]; ok {
					cur.Stage = rec.Stage
					running[rec.JobID] = cur
				}
			case rec.Op == journalDone:
				delete(running, rec.JobID)
			default:
				log.Error("state dir: journal line of unknown kind; skipping it", "file", journalFile, "line", n, "op", rec.Op)
			}
		}
		if err == io.EOF {
			break
		}
	}
	var out []journalRecord
	for _, id := range order {
		if rec, ok := running[id]; ok {
			out = append(out, rec)
			delete(running, id) // a job run twice is reported once
		}
	}
	return out
}

// start empties the journal (the caller has turned what an earlier run
// left into results) and opens it for appending. Without a path it does
// nothing.
func (j *journal) start() error {
	if j.path == "" {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rewriteLocked()
}

// rewriteLocked replaces the file with the records of the jobs still
// running and appends to the new file from now on. j.mu is held.
func (j *journal) rewriteLocked() error {
	var buf bytes.Buffer
	for _, rec := range j.running {
		line, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("journal: encode: %w", err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if err := writeFileAtomic(j.path, buf.Bytes()); err != nil {
		return fmt.Errorf("journal: rewrite: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: open: %w", err)
	}
	if j.f != nil {
		_ = j.f.Close()
	}
	j.f, j.appended, j.dirty = f, 0, true
	return nil
}

// appendLocked writes rec as one line with one write(2). j.mu is held.
func (j *journal) appendLocked(rec *journalRecord) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("journal: encode: %w", err)
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("journal: append: %w", err)
	}
	j.appended++
	j.dirty = true
	if j.appended >= journalCompactAfter {
		if err := j.rewriteLocked(); err != nil {
			// The appended file is still whole; only its size grows.
			j.log.Error("state dir: journal not compacted", "error", err)
			j.appended = 0
		}
	}
	return nil
}

// started records that job id, dispatched with ticket, runs here since
// at. It returns once the record is in the page cache.
func (j *journal) started(id, ticket string, at time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	rec := &journalRecord{
		Op:      journalRun,
		JobID:   id,
		Ticket:  ticket,
		Started: at,
	}
	if err := j.appendLocked(rec); err != nil {
		return err
	}
	j.running[id] = rec
	return nil
}

// stage records that running job id entered stage.
func (j *journal) stage(id string, stage blacktreev1.JobStage) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	cur := j.running[id]
	if j.f == nil || cur == nil || cur.Stage == stage {
		return nil
	}
	if err := j.appendLocked(&journalRecord{Op: journalStage, JobID: id, Stage: stage}); err != nil {
		return err
	}
	cur.Stage = stage
	return nil
}

// done records that job id no longer runs here: its result is held, or it
// never started.
func (j *journal) done(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil || j.running[id] == nil {
		return nil
	}
	delete(j.running, id)
	return j.appendLocked(&journalRecord{Op: journalDone, JobID: id})
}

// sync fsyncs the journal if it was written since the last sync. The
// fsync runs outside j.mu, so that it never holds up a job's accept.
func (j *journal) sync() error {
	j.mu.Lock()
	f, dirty := j.f, j.dirty
	j.dirty = false
	j.mu.Unlock()
	if f == nil || !dirty {
		return nil
	}
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		// Rewritten meanwhile: the new file is dirty and syncs next.
		return fmt.Errorf("journal: fsync: %w", err)
	}
	return nil
}

// syncLoop fsyncs the journal every journalSyncInterval until stop is
// closed, then once more. Run owns it.
func (j *journal) syncLoop(stop <-chan struct{}) {
	t := time.NewTicker(journalSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
			if err := j.sync(); err != nil {
				j.log.Error("state dir", "error", err)
			}
			return
		}
		if err := j.sync(); err != nil {
			j.log.Error("state dir", "error", err)
		}
	}
}

// close stops recording and closes the file.
func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		_ = j.f.Close()
		j.f = nil
	}
}

// interruptedResult is the failed result a restarted agent reports for a
// job its earlier run left running (rec): interrupted in the stage it
// reached, with its ticket, so that the hub takes it.
func interruptedResult(workerID string, rec journalRecord, now time.Time) *blacktreev1.JobResult {
	where := "while running"
	if rec.Stage != blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED {
		where = "in " + executor.StageWord(rec.Stage)
	}
	resp := jobspec.Failed(rec.JobID, rec.Stage, fmt.Errorf("worker %s restarted: job interrupted %s", workerID, where))
	resp.WorkerId = workerID
	if !rec.Started.IsZero() {
		resp.StartedAt = timestamppb.New(rec.Started)
	}
	resp.FinishedAt = timestamppb.New(now)
	return &blacktreev1.JobResult{
		Response:       resp,
		DispatchTicket: rec.Ticket,
	}
}
