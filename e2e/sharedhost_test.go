package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// defaultStateDir is blacktree-worker's --state-dir default for root, the
// user CI runs as.
const defaultStateDir = "/var/lib/blacktree-worker"

// TestTwoDefaultWorkersOneHost: two workers started on one host with
// default flags used to share a worker id (and replace each other's
// sessions, publishing duplicate statuses). Now the second one refuses its
// state directory and exits 1; 2,000 jobs then get exactly one status
// each. A second worker with a --state-dir of its own runs beside the
// first, and 2,000 more jobs again get one status each, spread over both.
func TestTwoDefaultWorkersOneHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test starts workers with default flags, whose state directory (%s) is root's: run it as root", defaultStateDir)
	}
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	// Default flags: no --name, no --state-dir (the worker takes the host
	// name and defaultStateDir); only the hub, credentials and a fast
	// executor are set, as any test worker needs.
	start := func(name string, extra ...string) *cluster.Process {
		args := append([]string{
			"--hub", h.GRPCAddr,
			"--insecure",
			"--token-file", e.tokenFile,
			"--executor", "noop",
			"--noop-delay", "1ms",
		}, extra...)
		p, err := cluster.Start("worker "+name, bins.Worker, args, nil, nil)
		if err != nil {
			t.Fatalf("start worker %s: %v", name, err)
		}
		e.procs = append(e.procs, p)
		return p
	}
	first := start("first")
	e.waitWorkers(h, 1, 30*time.Second)
	second := start("second")
	select {
	case <-second.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("a second worker on %s is still running after 30s, want it to exit\n%s", defaultStateDir, tail(second.Output(), 2000))
	}
	if code := second.ExitCode(); code != 1 {
		t.Errorf("second worker exit code = %d, want 1", code)
	}
	if out := second.Output(); !strings.Contains(out, defaultStateDir) || !strings.Contains(out, "in use by another worker") {
		t.Errorf("second worker's output does not name the shared state directory and why:\n%s", tail(out, 2000))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var published []string // every job of this test, for the ledgers
	run := func(prefix string) (map[string]int, cluster.Ledger) {
		jobs := ids(prefix, 2000)
		published = append(published, jobs...)
		e.publish(ctx, jobs...)
		got, err := e.cp.WaitFor(ctx, jobs...)
		if err != nil {
			t.Fatalf("WaitFor() = %v", err)
		}
		// Duplicates would arrive after the first status: give them a moment.
		time.Sleep(time.Second)
		workers := map[string]int{}
		for _, r := range got {
			workers[r.GetWorkerId()]++
		}
		l := e.cp.Ledger(published)
		if l.Lost != 0 || l.Duplicates != 0 || l.Unexpected != 0 {
			t.Errorf("%s: Ledger() = %s, want every job answered exactly once", prefix, l)
		}
		return workers, l
	}
	alone, aloneLedger := run("default")
	if len(alone) != 1 {
		t.Errorf("jobs ran on %d worker ids (%v), want the first worker's alone", len(alone), alone)
	}

	start("own-dir", "--state-dir", filepath.Join(e.dir, "state-own-dir"))
	e.waitWorkers(h, 2, 30*time.Second)
	both, bothLedger := run("two")
	if len(both) != 2 {
		t.Errorf("jobs ran on %d worker ids (%v), want both workers", len(both), both)
	}
	select {
	case <-first.Done():
		t.Errorf("the first worker exited:\n%s", tail(first.Output(), 2000))
	default:
	}
	record(t, "second default worker exit %d (state dir in use); 2000 jobs alone: %s; with a worker on its own dir: %s, by worker %v",
		second.ExitCode(), aloneLedger, bothLedger, both)
}
