package workeragent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/workeragent/executor"
)

// The job journal (docs/design/worker-journal.md) is a file of one slot
// per job slot, mapped shared into memory: recording a job is a few
// stores into the page cache, no system call, and a killed agent (kill -9)
// loses none of it. Run fsyncs it every journalSyncInterval when it
// changed, which bounds what a machine crash loses.
//
// A slot is journalSlotSize bytes: a header of four native-endian uint32
// (payload length, 0 for a free slot; CRC-32 of the payload; the stage
// reached; reserved) and the payload (journalEntry.encode). The
// payload and its CRC are written before the length, and the length,
// the stage and a slot's release are single aligned stores, so that a
// process killed at any instant leaves each slot free, whole, or (torn)
// failing its CRC.
const (
	journalFile         = "jobs.journal"
	journalSlotSize     = 512
	journalHeaderSize   = 16
	journalSyncInterval = time.Second
)

// journalEntry is a running job as the journal keeps it: what a restarted
// agent needs to report it (its dispatch ticket makes the hub take the
// report, docs/protocol.md#ownership). Stage lives in the slot header.
type journalEntry struct {
	JobID   string
	Ticket  string
	Started time.Time
	Stage   blacktreev1.JobStage
}

// encode appends e's payload to b: the start in Unix nanoseconds
// (uint64), then the job id and the ticket, each after its length
// (uint16), all native-endian.
func (e journalEntry) encode(b []byte) []byte {
	b = binary.NativeEndian.AppendUint64(b, uint64(e.Started.UnixNano()))
	for _, s := range []string{e.JobID, e.Ticket} {
		b = binary.NativeEndian.AppendUint16(b, uint16(min(len(s), 0xffff)))
		b = append(b, s[:min(len(s), 0xffff)]...)
	}
	return b
}

// decodeJournalEntry parses a payload encode wrote; ok is false if it is
// malformed.
func decodeJournalEntry(b []byte) (e journalEntry, ok bool) {
	if len(b) < 8 {
		return e, false
	}
	e.Started = time.Unix(0, int64(binary.NativeEndian.Uint64(b))).UTC()
	b = b[8:]
	var fields [2]string
	for i := range fields {
		if len(b) < 2 {
			return e, false
		}
		n := int(binary.NativeEndian.Uint16(b))
		if len(b) < 2+n {
			return e, false
		}
		fields[i], b = string(b[2:2+n]), b[2+n:]
	}
	e.JobID, e.Ticket = fields[0], fields[1]
	return e, len(b) == 0 && e.JobID != ""
}

// journal records the jobs running here, so that an agent restarted on
// the same state directory reports each as interrupted at once instead of
// leaving it to the hub's lost-worker grace. A journal whose mem is nil
// (no state directory, Config.DisableJournal, or closed) records nothing.
// mu is a leaf lock: nothing else is taken under it.
type journal struct {
	path string
	log  hclog.Logger

	mu    sync.Mutex // guards the following
	f     *os.File   // the file, kept open to fsync it
	mem   []byte     // the file, mapped shared; nil when not recording
	slots map[string]int
	free  []int // free slot indexes
	dirty bool  // changed since the last fsync
}

// ErrJournalFull is returned when a job is recorded while every journal
// slot holds a running job (more jobs than Config.Slots: a bug).
var ErrJournalFull = errors.New("job journal: no free slot")

// openJournal reads the journal an earlier run left in dir and returns
// it, still to be started (journal.start), with the jobs that run left
// running. Unreadable slots are logged and skipped. An empty dir gives a
// journal that records nothing.
func openJournal(dir string, log hclog.Logger) (*journal, []journalEntry, error) {
	j := &journal{
		log:   log,
		slots: map[string]int{},
	}
	if dir == "" {
		return j, nil, nil
	}
	j.path = filepath.Join(dir, journalFile)
	b, err := os.ReadFile(j.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("state dir: read journal: %w", err)
	}
	return j, readJournal(b, log), nil
}

// readJournal returns the jobs the slots in b hold, in slot order.
func readJournal(b []byte, log hclog.Logger) []journalEntry {
	var out []journalEntry
	seen := map[string]bool{}
	for i := 0; (i+1)*journalSlotSize <= len(b); i++ {
		slot := b[i*journalSlotSize : (i+1)*journalSlotSize]
		n := binary.NativeEndian.Uint32(slot[0:])
		if n == 0 {
			continue
		}
		var e journalEntry
		ok := n <= journalSlotSize-journalHeaderSize
		if ok {
			payload := slot[journalHeaderSize : journalHeaderSize+n]
			if crc32.ChecksumIEEE(payload) == binary.NativeEndian.Uint32(slot[4:]) {
				e, ok = decodeJournalEntry(payload)
			} else {
				ok = false
			}
		}
		if !ok {
			// Damage, or a machine crash that kept part of a slot: the job
			// it named is left to the hub's grace.
			log.Error("state dir: journal slot unreadable; skipping it", "file", journalFile, "slot", i)
			continue
		}
		if seen[e.JobID] {
			continue
		}
		seen[e.JobID] = true
		e.Stage = blacktreev1.JobStage(binary.NativeEndian.Uint32(slot[8:]))
		out = append(out, e)
	}
	return out
}

// start replaces the journal with slots free slots (the caller has turned
// what an earlier run left into results) and maps it. Without a path it
// does nothing.
func (j *journal) start(slots int) error {
	if j.path == "" {
		return nil
	}
	// Zeros written, not a sparse file: a store into a mapped hole the
	// disk cannot back would kill the process with SIGBUS.
	if err := writeFileAtomic(j.path, make([]byte, slots*journalSlotSize)); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, slots*journalSlotSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("journal: mmap: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.f, j.mem = f, mem
	for i := slots - 1; i >= 0; i-- {
		j.free = append(j.free, i)
	}
	return nil
}

// word is the uint32 at byte off of the mapping, for single aligned stores.
func (j *journal) word(off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&j.mem[off]))
}

// started records that job id, dispatched with ticket, runs here since
// at. It returns once the record is in the page cache.
func (j *journal) started(id, ticket string, at time.Time) error {
	var buf [journalSlotSize]byte
	e := journalEntry{
		JobID:   id,
		Ticket:  ticket,
		Started: at,
	}
	payload := e.encode(buf[:0])
	if len(payload) > journalSlotSize-journalHeaderSize {
		return fmt.Errorf("journal: record of %d bytes exceeds a slot", len(payload))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mem == nil {
		return nil
	}
	if _, ok := j.slots[id]; ok {
		return nil
	}
	if len(j.free) == 0 {
		return ErrJournalFull
	}
	i := j.free[len(j.free)-1]
	j.free = j.free[:len(j.free)-1]
	j.slots[id] = i
	off := i * journalSlotSize
	copy(j.mem[off+journalHeaderSize:], payload)
	atomic.StoreUint32(j.word(off+4), crc32.ChecksumIEEE(payload))
	atomic.StoreUint32(j.word(off+8), uint32(blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED))
	atomic.StoreUint32(j.word(off), uint32(len(payload))) // last: the slot is whole
	j.dirty = true
	return nil
}

// stage records that running job id entered stage.
func (j *journal) stage(id string, stage blacktreev1.JobStage) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if i, ok := j.slots[id]; ok && j.mem != nil {
		atomic.StoreUint32(j.word(i*journalSlotSize+8), uint32(stage))
		j.dirty = true
	}
}

// done records that job id no longer runs here: its result is held, or it
// never started.
func (j *journal) done(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	i, ok := j.slots[id]
	if !ok || j.mem == nil {
		return
	}
	delete(j.slots, id)
	atomic.StoreUint32(j.word(i*journalSlotSize), 0)
	j.free = append(j.free, i)
	j.dirty = true
}

// sync fsyncs the journal if it changed since the last sync; the mapped
// pages are the file's page cache, which fsync writes back.
//
// The fsync runs outside j.mu, so that it never holds up a job's accept;
// the file is closed only after the last sync (Run).
func (j *journal) sync() error {
	j.mu.Lock()
	f, dirty := j.f, j.dirty
	j.dirty = false
	j.mu.Unlock()
	if f == nil || !dirty {
		return nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("journal: fsync: %w", err)
	}
	return nil
}

// syncLoop fsyncs the journal every journalSyncInterval until stop is
// closed, then once more. Run owns it.
func (j *journal) syncLoop(stop <-chan struct{}) {
	t := time.NewTicker(journalSyncInterval)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-t.C:
		case <-stop:
			done = true
		}
		if err := j.sync(); err != nil {
			j.log.Error("state dir", "error", err)
		}
	}
}

// close stops recording, unmaps and closes the file.
func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mem != nil {
		if err := syscall.Munmap(j.mem); err != nil {
			j.log.Error("state dir: journal: munmap", "error", err)
		}
		j.mem = nil
	}
	if j.f != nil {
		_ = j.f.Close()
		j.f = nil
	}
}

// interruptedResult is the failed result a restarted agent reports for a
// job its earlier run left running (e): interrupted in the stage it
// reached, with its ticket, so that the hub takes it.
func interruptedResult(workerID string, e journalEntry, now time.Time) *blacktreev1.JobResult {
	where := "while running"
	if e.Stage != blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED {
		where = "in " + executor.StageWord(e.Stage)
	}
	resp := jobspec.Failed(e.JobID, e.Stage, fmt.Errorf("worker %s restarted: job interrupted %s", workerID, where))
	resp.WorkerId = workerID
	if !e.Started.IsZero() {
		resp.StartedAt = timestamppb.New(e.Started)
	}
	resp.FinishedAt = timestamppb.New(now)
	return &blacktreev1.JobResult{
		Response:       resp,
		DispatchTicket: e.Ticket,
	}
}
