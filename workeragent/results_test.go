package workeragent

import (
	"context"
	"errors"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// testPersistDelay is PersistResultsAfter in tests that want the timer to
// fire (or not) while they watch.
const testPersistDelay = 50 * time.Millisecond

// heldResults returns how many results the agent holds.
func heldResults(a *Agent) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.results)
}

// noResultFileFor fails the test if a result file appears in dir within d.
func noResultFileFor(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(d)
	for {
		if n := resultFiles(t, dir); n != 0 {
			t.Fatalf("resultFiles() = %d, want 0 (no result file written)", n)
		}
		select {
		case <-tick.C:
		case <-deadline:
			return
		}
	}
}

// unackedResult returns the result of jobID carried by reg, or nil.
func unackedResult(reg *blacktreev1.Register, jobID string) *blacktreev1.JobResponse {
	for _, r := range reg.GetUnackedResults() {
		if r.GetResponse().GetJobId() == jobID {
			return r.GetResponse()
		}
	}
	return nil
}

// TestResultAckedInTimeNeverWritten: a ResultAck within PersistResultsAfter
// means the result never reaches the state dir, and the timer is stopped.
func TestResultAckedInTimeNeverWritten(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		watch time.Duration // how long to make sure no file appears after the ack
	}{
		// Nothing can be written before the ack: the check at JobResult
		// time is exact.
		{name: "long delay", delay: time.Minute, watch: 3 * testPersistDelay},
		// The timer would fire right after the ack: it must be stopped.
		{name: "short delay", delay: testPersistDelay, watch: 3 * testPersistDelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{})
			dir := t.TempDir()
			r := startAgent(t, Config{HubAddrs: []string{hub.Addr}, StateDir: dir, PersistResultsAfter: tt.delay}, executor.Noop{})
			s := hub.NextStream(t, wait)
			for _, id := range []string{"fast-1", "fast-2"} {
				start := time.Now() // the job cannot finish before this
				s.Send(t, fakehub.RunJob(jobReq(id)))
				s.WaitFor(t, wait, "JobResult", fakehub.IsResult(id))
				n := resultFiles(t, dir)
				if elapsed := time.Since(start); n != 0 && elapsed < tt.delay {
					t.Errorf("resultFiles() %s after RunJob of %s = %d, want 0 before PersistResultsAfter = %s", elapsed, id, n, tt.delay)
				}
				s.Send(t, fakehub.Ack(id))
				eventually(t, "ResultAck handled", func() bool { return heldResults(r.agent) == 0 })
				if got := resultFiles(t, dir); got != 0 {
					t.Errorf("resultFiles() after the ack of %s = %d, want 0", id, got)
				}
			}
			noResultFileFor(t, dir, tt.watch)
		})
	}
}

// TestResultWrittenWhenAckLate: with the ack withheld the result is written
// once PersistResultsAfter has passed, and a new agent on the same state
// dir re-sends it in Register.
func TestResultWrittenWhenAckLate(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	dir := t.TempDir()
	cfg := Config{HubAddrs: []string{hub.Addr}, StateDir: dir, PersistResultsAfter: testPersistDelay}
	r1 := startAgent(t, cfg, executor.Noop{})
	s1 := hub.NextStream(t, wait)
	start := time.Now() // the job cannot finish before this
	s1.Send(t, fakehub.RunJob(jobReq("late")))
	s1.WaitFor(t, wait, "JobResult", fakehub.IsResult("late"))
	eventually(t, "result file written after the delay", func() bool { return resultFiles(t, dir) == 1 })
	if got := time.Since(start); got < testPersistDelay {
		t.Errorf("result file written %s after RunJob, want at least PersistResultsAfter = %s", got, testPersistDelay)
	}
	if err := r1.stop(t); !errors.Is(err, ErrAborted) {
		t.Errorf("Run() = %v, want ErrAborted", err)
	}

	r2 := startAgent(t, cfg, executor.Noop{})
	s2 := hub.NextStream(t, wait)
	if got := unackedResult(s2.Register, "late"); got == nil || !got.GetSuccess() {
		t.Fatalf("Register.unacked_results after restart = %v, want the late result", s2.Register.GetUnackedResults())
	}
	s2.Send(t, fakehub.Ack("late"))
	eventually(t, "result file removed after ResultAck", func() bool { return resultFiles(t, dir) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r2.agent.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
}

// TestUnackedResultWrittenAtOnce: a result whose session ends, or whose
// agent stops, is written at once, long before PersistResultsAfter (a
// minute here), and the next session re-sends it in Register.
func TestUnackedResultWrittenAtOnce(t *testing.T) {
	tests := []struct {
		name string
		// end ends the stream the result was sent on; it returns the
		// stream whose Register should carry the result.
		end func(t *testing.T, hub *fakehub.Hub, s *fakehub.Stream, r *running, cfg Config) (*fakehub.Stream, *running)
	}{
		{
			name: "session broken",
			end: func(t *testing.T, hub *fakehub.Hub, s *fakehub.Stream, r *running, _ Config) (*fakehub.Stream, *running) {
				s.Kill()
				eventually(t, "result file written when the session ended", func() bool { return resultFiles(t, r.agent.cfg.StateDir) == 1 })
				return hub.NextStream(t, wait), r
			},
		},
		{
			name: "agent stopped",
			end: func(t *testing.T, hub *fakehub.Hub, _ *fakehub.Stream, r *running, cfg Config) (*fakehub.Stream, *running) {
				if err := r.stop(t); !errors.Is(err, ErrAborted) {
					t.Errorf("Run() = %v, want ErrAborted", err)
				}
				// Run returned: the file must be there now.
				if got := resultFiles(t, cfg.StateDir); got != 1 {
					t.Fatalf("resultFiles() after Run returned = %d, want 1", got)
				}
				r2 := startAgent(t, cfg, executor.Noop{})
				return hub.NextStream(t, wait), r2
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{})
			cfg := Config{HubAddrs: []string{hub.Addr}, StateDir: t.TempDir(), PersistResultsAfter: time.Minute}
			r := startAgent(t, cfg, executor.Noop{})
			s := hub.NextStream(t, wait)
			s.Send(t, fakehub.RunJob(jobReq("held")))
			s.WaitFor(t, wait, "JobResult", fakehub.IsResult("held"))
			if got := resultFiles(t, cfg.StateDir); got != 0 {
				t.Errorf("resultFiles() while the session is up = %d, want 0", got)
			}

			s2, r2 := tt.end(t, hub, s, r, cfg)
			if got := unackedResult(s2.Register, "held"); got == nil || !got.GetSuccess() {
				t.Fatalf("Register.unacked_results = %v, want the held result", s2.Register.GetUnackedResults())
			}
			s2.Send(t, fakehub.Ack("held"))
			eventually(t, "result file removed after ResultAck", func() bool { return resultFiles(t, cfg.StateDir) == 0 })
			eventually(t, "ResultAck handled", func() bool { return heldResults(r2.agent) == 0 })
		})
	}
}

// TestResultWithoutSessionWrittenAtOnce: a job that finishes while no hub
// is connected has its result written at once.
func TestResultWithoutSessionWrittenAtOnce(t *testing.T) {
	hub1 := fakehub.Start(t, fakehub.Options{})
	dir := t.TempDir()
	g := newGateExec()
	r := startAgent(t, Config{HubAddrs: []string{hub1.Addr}, StateDir: dir, PersistResultsAfter: time.Minute}, g)
	s1 := hub1.NextStream(t, wait)
	s1.Send(t, fakehub.RunJob(jobReq("offline")))
	s1.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("offline"))
	waitStarted(t, g, "offline")
	hub1.Stop()
	eventually(t, "session gone", func() bool { s, _ := r.agent.currentSession(); return s == nil })
	g.release("offline")
	eventually(t, "result file written with no session", func() bool { return resultFiles(t, dir) == 1 })

	hub2 := fakehub.Start(t, fakehub.Options{Addr: hub1.Addr})
	s2 := hub2.NextStream(t, wait)
	res := unackedResult(s2.Register, "offline")
	if res == nil {
		// The job may have finished after Register was built.
		res = s2.WaitFor(t, wait, "JobResult", fakehub.IsResult("offline")).GetJobResult().GetResponse()
	}
	if !res.GetSuccess() {
		t.Errorf("offline result = %v, want success", res)
	}
	s2.Send(t, fakehub.Ack("offline"))
	eventually(t, "result file removed after ResultAck", func() bool { return resultFiles(t, dir) == 0 })
}

// TestPersistResultsBeforeSend: the old behaviour, the result is on disk
// before its JobResult is sent.
func TestPersistResultsBeforeSend(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	dir := t.TempDir()
	startAgent(t, Config{HubAddrs: []string{hub.Addr}, StateDir: dir, PersistResultsBeforeSend: true}, executor.Noop{})
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("sync")))
	s.WaitFor(t, wait, "JobResult", fakehub.IsResult("sync"))
	if got := resultFiles(t, dir); got != 1 {
		t.Errorf("resultFiles() when the JobResult arrived = %d, want 1 (written before sending)", got)
	}
	s.Send(t, fakehub.Ack("sync"))
	eventually(t, "result file removed after ResultAck", func() bool { return resultFiles(t, dir) == 0 })
}

// TestPersistResultHeldOnly: persistResult writes a held result once, and
// nothing for one acknowledged before it got to it; the ack of a written
// result removes its file.
func TestPersistResultHeldOnly(t *testing.T) {
	dir := t.TempDir()
	a, err := New(Config{HubAddrs: []string{"h:1"}, Insecure: true, StateDir: dir, PersistResultsAfter: time.Minute}, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	s := &session{log: a.log}
	hold := func(id string) *heldResult {
		h := &heldResult{res: &blacktreev1.JobResult{Response: &blacktreev1.JobResponse{JobId: id, Success: true}}}
		a.mu.Lock()
		a.results[id] = h
		a.mu.Unlock()
		return h
	}

	acked := hold("acked")
	a.handleResultAck(s, "acked")
	if a.persistResult("acked", acked) {
		t.Errorf("persistResult(acked) = true, want false (already acknowledged)")
	}
	if got := resultFiles(t, dir); got != 0 {
		t.Errorf("resultFiles() after persisting an acknowledged result = %d, want 0", got)
	}

	held := hold("held")
	if !a.persistResult("held", held) {
		t.Errorf("persistResult(held) = false, want true")
	}
	if a.persistResult("held", held) {
		t.Errorf("second persistResult(held) = true, want false (already written)")
	}
	if got := resultFiles(t, dir); got != 1 {
		t.Errorf("resultFiles() after persisting a held result = %d, want 1", got)
	}
	a.handleResultAck(s, "held")
	if got := resultFiles(t, dir); got != 0 {
		t.Errorf("resultFiles() after the ack of a written result = %d, want 0", got)
	}
}
