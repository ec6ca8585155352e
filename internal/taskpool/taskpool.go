// Package taskpool runs short-lived tasks on goroutines that outlive them.
package taskpool

import "sync"

// Pool runs each submitted task at once on a goroutine of its own,
// reusing goroutines that finished earlier tasks.
//
// The hub publishes every status on a goroutine of its own (a publish
// waits for the broker's confirm, and publishes must pipeline), and a
// connected worker's sender exists only while frames are queued; a worker
// agent runs every job, and the job's log pump, on goroutines of their
// own. A fresh goroutine starts with a small stack and grows it on the way
// into amqp091, grpc-go or the executor: that stack copying was 5-9% of the
// hub's samples while draining, and the new goroutines a worker's CPU per
// job (docs/design/dispatch-throughput.md). Goroutines here keep their
// grown stacks between tasks: up to maxIdle of them wait for the next
// task, and a task that finds none idle gets a new goroutine, so a task
// never waits behind another (a publish may wait seconds for a confirm, a
// Send for a slow reader, a job hours).
//
// One mutex, mu, owns the queue and counts; the goroutines belong to wg,
// which Close waits for.
type Pool struct {
	maxIdle int // goroutines kept waiting for tasks; more exit when idle

	mu     sync.Mutex // guards the following
	tasks  []func()   // submitted, not yet taken
	idle   int        // goroutines waiting in loop and not yet claimed by a submit
	closed bool
	wake   sync.Cond // signalled once per claimed idle goroutine; broadcast by close

	wg sync.WaitGroup
}

// New returns a pool that keeps up to maxIdle goroutines waiting for
// tasks.
func New(maxIdle int) *Pool {
	p := &Pool{maxIdle: maxIdle}
	p.wake.L = &p.mu
	return p
}

// Submit runs f on an idle goroutine or a new one. After Close it runs f on
// a new goroutine that Close no longer waits for, so callers must not
// submit after Close (the hub's Dispatcher and the worker agent stop
// submitting first).
func (p *Pool) Submit(f func()) {
	p.mu.Lock()
	p.tasks = append(p.tasks, f)
	if p.idle > 0 && !p.closed {
		p.idle-- // claimed: this task is taken by a waiting goroutine
		p.wake.Signal()
		p.mu.Unlock()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go p.loop()
}

// loop takes tasks until there are none, then waits for more while fewer
// than maxIdle goroutines wait, else exits.
func (p *Pool) loop() {
	defer p.wg.Done()
	p.mu.Lock()
	for {
		for len(p.tasks) == 0 {
			if p.closed || p.idle >= p.maxIdle {
				p.mu.Unlock()
				return
			}
			p.idle++
			p.wake.Wait()
		}
		f := p.tasks[0]
		p.tasks[0] = nil
		p.tasks = p.tasks[1:]
		if len(p.tasks) == 0 {
			p.tasks = nil // keep no array while idle
		}
		p.mu.Unlock()
		f()
		p.mu.Lock()
	}
}

// Close lets the goroutines finish the tasks submitted so far, then waits
// for them to exit. It is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.idle = 0
	p.wake.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
