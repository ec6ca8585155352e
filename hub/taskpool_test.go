package hub

import (
	"testing"
	"time"
)

func (p *taskPool) idleNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idle
}

func TestTaskPoolNeverQueuesATaskBehindABlockedOne(t *testing.T) {
	p := newTaskPool(4)
	defer p.close()
	const n = 20 // more than maxIdle: new goroutines are started
	gate := make(chan struct{})
	started := make(chan int, n)
	for i := range n {
		p.submit(func() {
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

func TestTaskPoolReusesIdleGoroutines(t *testing.T) {
	p := newTaskPool(4)
	defer p.close()
	for i := range 3 {
		ran := make(chan struct{})
		p.submit(func() { close(ran) })
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatalf("task %d did not run", i)
		}
		// One goroutine does every task: with a new one per task, the
		// idle count would grow.
		eventually(t, 5*time.Second, "the goroutine waits for the next task", func() bool { return p.idleNow() == 1 })
	}
}

func TestTaskPoolKeepsAtMostMaxIdle(t *testing.T) {
	p := newTaskPool(2)
	defer p.close()
	gate := make(chan struct{})
	running := make(chan struct{}, 5)
	for range 5 {
		p.submit(func() {
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

func TestTaskPoolCloseWaitsForRunningTasks(t *testing.T) {
	p := newTaskPool(1)
	gate := make(chan struct{})
	finished := make(chan struct{})
	p.submit(func() {
		<-gate
		close(finished)
	})
	closed := make(chan struct{})
	go func() {
		p.close()
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
	p.close() // idempotent
}
