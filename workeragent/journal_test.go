package workeragent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/syncbuf"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// startedJournal opens and starts a journal of slots slots in dir,
// logging to logs.
func startedJournal(t testing.TB, dir string, slots int, logs io.Writer) (*journal, []journalEntry) {
	t.Helper()
	log := hclog.New(&hclog.LoggerOptions{Output: logs})
	j, left, err := openJournal(dir, log)
	if err != nil {
		t.Fatalf("openJournal() error = %v", err)
	}
	if err := j.start(slots); err != nil {
		t.Fatalf("journal.start() error = %v", err)
	}
	t.Cleanup(j.close)
	return j, left
}

// journalled lists the jobs the journal file in dir holds.
func journalled(t *testing.T, dir string) []journalEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	return readJournal(b, hclog.NewNullLogger())
}

func TestJournalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	j, left := startedJournal(t, dir, 2, io.Discard)
	if len(left) != 0 {
		t.Fatalf("jobs left in a new journal = %v, want none", left)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(j.started("run-a", "dep.mac-a", at))
	must(j.started("run-b", "dep.mac-b", at))
	if err := j.started("run-c", "t", at); !errors.Is(err, ErrJournalFull) {
		t.Errorf("third job in two slots: error = %v, want ErrJournalFull", err)
	}
	j.stage("run-a", blacktreev1.JobStage_JOB_STAGE_BUILD)
	j.done("run-b")
	// Slots are reused: many more jobs than slots come and go.
	for i := range 100 {
		id := fmt.Sprintf("finished-%d", i)
		must(j.started(id, "t", at))
		j.done(id)
	}
	must(j.sync())
	j.close()

	_, left = startedJournal(t, dir, 2, io.Discard)
	if len(left) != 1 {
		t.Fatalf("jobs left = %+v, want run-a only", left)
	}
	got := left[0]
	if got.JobID != "run-a" || got.Ticket != "dep.mac-a" || got.Stage != blacktreev1.JobStage_JOB_STAGE_BUILD || !got.Started.Equal(at) {
		t.Errorf("left = %+v, want run-a, ticket dep.mac-a, stage BUILD, started %s", got, at)
	}
	if got := journalled(t, dir); len(got) != 0 {
		t.Errorf("journal after start holds %+v, want nothing (the caller reports what was left)", got)
	}
}

func TestJournalTornSlot(t *testing.T) {
	dir := t.TempDir()
	j, _ := startedJournal(t, dir, 4, io.Discard)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, id := range []string{"whole", "torn", "overlong", "garbage"} {
		if err := j.started(id, "t-"+id, at); err != nil {
			t.Fatal(err)
		}
	}
	j.close()
	path := filepath.Join(dir, journalFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	slot := func(i int) []byte { return b[i*journalSlotSize : (i+1)*journalSlotSize] }
	slot(1)[journalHeaderSize+3] ^= 0xff                            // payload damaged: CRC fails
	binary.NativeEndian.PutUint32(slot(2), journalSlotSize)         // length beyond the slot
	copy(slot(3), bytes.Repeat([]byte{0xab}, journalSlotSize))      // noise
	b = append(b, bytes.Repeat([]byte{0x01}, journalSlotSize/2)...) // a cut-off slot: ignored
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	_, left := startedJournal(t, dir, 4, logs)
	if len(left) != 1 || left[0].JobID != "whole" || left[0].Ticket != "t-whole" {
		t.Errorf("jobs left = %+v, want whole only", left)
	}
	out := logs.String()
	for _, want := range []string{"journal slot unreadable; skipping it: file=jobs.journal slot=1", "slot=2", "slot=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// stageExec enters the build stage, then runs like its gateExec.
type stageExec struct{ *gateExec }

func (e stageExec) Run(ctx context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	executor.EnterStage(ctx, blacktreev1.JobStage_JOB_STAGE_BUILD)
	return e.gateExec.Run(ctx, req, logs)
}

// copyStateDir copies what a killed agent leaves in src (its files, as
// the page cache holds them) into a new directory.
func copyStateDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		if d.Name() == lockFile {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestRestartReportsInterruptedJob(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: 50 * time.Millisecond, DeploymentID: "dep-a"})
	dir := t.TempDir()
	gate := newGateExec()
	r1 := startAgent(t, Config{HubAddrs: []string{hub.Addr}, Slots: 2, StateDir: dir}, stageExec{gate})
	s1 := hub.NextStream(t, wait)

	// One job finishes and is acknowledged; another is still building
	// when the process "dies": its state directory, copied now, is what
	// kill -9 leaves behind.
	s1.Send(t, fakehub.RunJobTicket(jobReq("finished"), "dep-a.fin"))
	waitStarted(t, gate, "finished")
	gate.release("finished")
	s1.WaitFor(t, wait, "JobResult", fakehub.IsResult("finished"))
	s1.Send(t, fakehub.Ack("finished"))
	s1.Send(t, fakehub.RunJobTicket(jobReq("stuck"), "dep-a.stuck"))
	s1.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("stuck"))
	waitStarted(t, gate, "stuck")
	snapshot := copyStateDir(t, dir)

	r2 := startAgent(t, Config{HubAddrs: []string{hub.Addr}, StateDir: snapshot}, executor.Noop{})
	if r2.agent.WorkerID() != r1.agent.WorkerID() {
		t.Fatalf("restarted worker id = %q, want %q", r2.agent.WorkerID(), r1.agent.WorkerID())
	}
	s2 := hub.NextStream(t, wait)
	res := s2.WaitFor(t, wait, "JobResult for the interrupted job", func(m *blacktreev1.WorkerMessage) bool {
		if fakehub.IsResult("finished")(m) {
			t.Errorf("the finished, acknowledged job was reported again after the restart")
		}
		return fakehub.IsResult("stuck")(m)
	}).GetJobResult()
	resp := res.GetResponse()
	wantErr := "worker " + r1.agent.WorkerID() + " restarted: job interrupted in build"
	if resp.GetSuccess() || resp.GetError() != wantErr || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
		t.Errorf("interrupted result = success %v, error %q, stage %s; want failed, %q, BUILD", resp.GetSuccess(), resp.GetError(), resp.GetFailedStage(), wantErr)
	}
	if got := res.GetDispatchTicket(); got != "dep-a.stuck" {
		t.Errorf("interrupted result's ticket = %q, want dep-a.stuck", got)
	}
	if resp.GetStartedAt() == nil || resp.GetFinishedAt() == nil {
		t.Errorf("interrupted result without start or finish time: %v", resp)
	}
	for range 3 { // a few heartbeats: a result for "finished" would have come before them
		s2.WaitFor(t, wait, "heartbeat", func(m *blacktreev1.WorkerMessage) bool {
			if fakehub.IsResult("finished")(m) {
				t.Fatalf("the finished, acknowledged job was reported again after the restart")
			}
			return m.GetHeartbeat() != nil
		})
	}
	if got := journalled(t, snapshot); len(got) != 0 {
		t.Errorf("restarted journal holds %+v, want nothing (nothing runs)", got)
	}
	// The interrupted result is on disk until acknowledged, like any.
	if n := resultFiles(t, snapshot); n != 1 {
		t.Errorf("result files = %d, want 1", n)
	}
	s2.Send(t, fakehub.Ack("stuck"))
	eventually(t, "interrupted result forgotten after ResultAck", func() bool { return resultFiles(t, snapshot) == 0 })
	gate.openAll()
}

func TestCleanStopLeavesNoJournalledJob(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	dir := t.TempDir()
	gate := newGateExec()
	r := startAgent(t, Config{HubAddrs: []string{hub.Addr}, StateDir: dir}, gate)
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("cancelled-by-stop")))
	waitStarted(t, gate, "cancelled-by-stop")
	_ = r.stop(t) // cancels the job: its result is kept, its journal entry ends

	if got := journalled(t, dir); len(got) != 0 {
		t.Errorf("jobs left in the journal after a clean stop = %+v, want none", got)
	}
}

func TestDisableJournal(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	dir := t.TempDir()
	gate := newGateExec()
	startAgent(t, Config{HubAddrs: []string{hub.Addr}, StateDir: dir, DisableJournal: true}, gate)
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("unjournalled")))
	waitStarted(t, gate, "unjournalled")
	if _, err := os.Stat(filepath.Join(dir, journalFile)); !os.IsNotExist(err) {
		t.Errorf("journal file with DisableJournal: Stat() error = %v, want not-exist", err)
	}
	gate.openAll()
}
