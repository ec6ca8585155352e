package workeragent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

func TestWorkerIDStable(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{HubAddrs: []string{"h:1"}, Insecure: true, StateDir: dir}
	a1, err := New(cfg, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	// a1 holds the directory until its Run returns (never run here).
	if _, err := New(cfg, executor.Noop{}, nil); !errors.Is(err, ErrStateDirLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second New() on a held state dir error = %v, want ErrStateDirLocked naming %s", err, dir)
	}
	unlockStateDir(a1.stateLock)
	a2, err := New(cfg, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer unlockStateDir(a2.stateLock)
	if a1.WorkerID() == "" || a1.WorkerID() != a2.WorkerID() {
		t.Errorf("WorkerID() = %q then %q, want the same non-empty id", a1.WorkerID(), a2.WorkerID())
	}
	cfg.StateDir = t.TempDir()
	a3, err := New(cfg, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer unlockStateDir(a3.stateLock)
	if a3.WorkerID() == a1.WorkerID() {
		t.Errorf("WorkerID() in another state dir = %q, want a different id", a3.WorkerID())
	}
}

func TestUnackedResultSurvivesRestart(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	dir := t.TempDir()
	cfg := Config{HubAddrs: []string{hub.Addr}, StateDir: dir}

	r1 := startAgent(t, cfg, executor.Noop{})
	s1 := hub.NextStream(t, wait)
	s1.Send(t, fakehub.RunJob(jobReq("persist")))
	s1.WaitFor(t, wait, "JobResult", fakehub.IsResult("persist"))
	if err := r1.stop(t); !errors.Is(err, ErrAborted) { // no ack: the result is kept
		t.Errorf("Run() = %v, want ErrAborted", err)
	}

	r2 := startAgent(t, cfg, executor.Noop{})
	s2 := hub.NextStream(t, wait)
	if got, want := s2.Register.GetWorkerId(), r1.agent.WorkerID(); got != want {
		t.Errorf("Register.worker_id after restart = %q, want %q", got, want)
	}
	if got := s2.Register.GetUnackedResults(); len(got) != 1 || got[0].GetResponse().GetJobId() != "persist" || !got[0].GetResponse().GetSuccess() {
		t.Fatalf("Register.unacked_results after restart = %v, want the persist result", got)
	}
	s2.Send(t, fakehub.Ack("persist"))
	eventually(t, "result file removed after ResultAck", func() bool { return resultFiles(t, dir) == 0 })
	// Nothing left: a graceful shutdown finishes at once.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r2.agent.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
}

func TestShutdownDrains(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
	g := newGateExec()
	r := startAgent(t, Config{HubAddrs: []string{hub.Addr}}, g)
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("sd")))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("sd"))
	waitStarted(t, g, "sd")

	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		shutdownErr <- r.agent.Shutdown(ctx)
	}()
	s.WaitFor(t, wait, "draining heartbeat", func(m *blacktreev1.WorkerMessage) bool { return m.GetHeartbeat().GetDraining() })
	g.release("sd")
	s.WaitFor(t, wait, "JobResult", fakehub.IsResult("sd"))
	select {
	case err := <-shutdownErr:
		t.Fatalf("Shutdown() = %v before the result was acknowledged, want it to wait", err)
	default:
	}
	s.Send(t, fakehub.Ack("sd"))
	select {
	case err := <-shutdownErr:
		if err != nil {
			t.Errorf("Shutdown() = %v, want nil", err)
		}
	case <-time.After(wait):
		t.Fatalf("Shutdown() did not return within %s", wait)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Run() = %v, want nil after a clean drain", err)
	}
}

func TestShutdownTimeoutAborts(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	r := startAgent(t, Config{HubAddrs: []string{hub.Addr}}, executor.Noop{Delay: time.Hour})
	s := hub.NextStream(t, wait)
	s.Send(t, fakehub.RunJob(jobReq("stuck")))
	s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("stuck"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := r.agent.Shutdown(ctx); !errors.Is(err, ErrAborted) {
		t.Errorf("Shutdown() = %v, want ErrAborted", err)
	}
	res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("stuck")).GetJobResult().GetResponse()
	if res.GetSuccess() {
		t.Errorf("aborted job result = %v, want failure", res)
	}
}

func TestCorruptStateIgnored(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{HubAddrs: []string{"h:1"}, Insecure: true, StateDir: dir}
	a0, err := New(cfg, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	unlockStateDir(a0.stateLock)
	res := filepath.Join(dir, resultsDir)
	for name, body := range map[string]string{"bad" + resultFileExt: "\xff\xff not a proto", ".tmp-123": "half written"} {
		if err := os.WriteFile(filepath.Join(res, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := New(cfg, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() with a corrupt result file error = %v, want nil", err)
	}
	defer unlockStateDir(a.stateLock)
	if got := len(a.results); got != 0 {
		t.Errorf("results loaded = %d, want 0", got)
	}
	if _, err := os.Stat(filepath.Join(res, ".tmp-123")); !os.IsNotExist(err) {
		t.Errorf("leftover temporary file: Stat() error = %v, want not-exist", err)
	}
}

func TestEphemeralState(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	a, err := New(Config{HubAddrs: []string{hub.Addr}, Insecure: true}, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	b, err := New(Config{HubAddrs: []string{hub.Addr}, Insecure: true}, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if a.WorkerID() == b.WorkerID() {
		t.Errorf("WorkerID() without a state dir = %q twice, want a fresh id per agent", a.WorkerID())
	}
}
