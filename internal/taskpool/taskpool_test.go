package taskpool

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/blacktree/blacktree/internal/cluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func (p *Pool) idleNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idle
}

func TestPoolNeverQueuesATaskBehindABlockedOne(t *testing.T) {
	p := New(4)
	defer p.Close()
	const n = 20 // more than maxIdle: new goroutines are started
	gate := make(chan struct{})
	started := make(chan int, n)
	for i := range n {
		p.Submit(func() {
			started <- i
			<-gate
		})
	}
	seen := map[int]bool{}
	deadline := time.After(5 * time.Second)
	for len(seen) < n {
		select {
		case i := <-started:
			seen[i] = true
		case <-deadline:
			t.Fatalf("%d of %d blocked tasks started, want all (a task waited behind another)", len(seen), n)
		}
	}
	close(gate)
}

func TestPoolReusesIdleGoroutines(t *testing.T) {
	p := New(4)
	defer p.Close()
	for i := range 3 {
		ran := make(chan struct{})
		p.Submit(func() { close(ran) })
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatalf("task %d did not run", i)
		}
		// One goroutine does every task: with a new one per task, the
		// idle count would grow.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cluster.Poll(ctx, 10*time.Millisecond, func() bool { return p.idleNow() == 1 })
		cancel()
		if err != nil {
			t.Fatalf("idleNow() = %d after task %d, want 1 (the goroutine waits for the next task)", p.idleNow(), i)
		}
	}
}

func TestPoolKeepsAtMostMaxIdle(t *testing.T) {
	p := New(2)
	defer p.Close()
	gate := make(chan struct{})
	running := make(chan struct{}, 5)
	for range 5 {
		p.Submit(func() {
			running <- struct{}{}
			<-gate
		})
	}
	for range 5 {
		select {
		case <-running:
		case <-time.After(5 * time.Second):
			t.Fatal("not every task started")
		}
	}
	close(gate)
	// The other three exit rather than wait: the idle count reaches 2 and
	// never passes it.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	settled := time.After(300 * time.Millisecond)
	for watching := true; watching; {
		select {
		case <-tick.C:
			if got := p.idleNow(); got > 2 {
				t.Fatalf("idle goroutines = %d, want at most 2 (maxIdle)", got)
			}
		case <-settled:
			watching = false
		}
	}
	if got := p.idleNow(); got != 2 {
		t.Fatalf("idle goroutines = %d, want 2 (maxIdle)", got)
	}
}

func TestPoolCloseWaitsForRunningTasks(t *testing.T) {
	p := New(1)
	gate := make(chan struct{})
	finished := make(chan struct{})
	p.Submit(func() {
		<-gate
		close(finished)
	})
	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("close() returned while a task was running")
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close() did not return after the task finished")
	}
	select {
	case <-finished:
	default:
		t.Fatal("close() returned before the task finished")
	}
	p.Close() // idempotent
}
