package workeragent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/workeragent/executor"
)

// sessionCloseGrace bounds the clean close of the last stream when the agent
// stops (CloseSend, then wait for the hub to end it).
const sessionCloseGrace = 3 * time.Second

var (
	// ErrAlreadyRunning is returned by a second call to Run.
	ErrAlreadyRunning = errors.New("worker agent already running")
	// ErrAborted is returned by Run (and Shutdown) when the agent stopped
	// with jobs cancelled or results no hub has acknowledged. Such results
	// stay in the state directory and go out with the next start.
	ErrAborted = errors.New("worker agent stopped before every result was acknowledged")
	// ErrNoHub is returned by Run when no hub answered within
	// Config.InitialConnectTimeout.
	ErrNoHub = errors.New("no hub reachable")
)

// Agent is one worker agent: a connection loop to the hub(s) and a job
// runner. Create it with New, start it with Run, stop it with Shutdown (or
// by cancelling Run's context, which aborts running jobs).
type Agent struct {
	cfg      Config
	exec     executor.Executor
	log      hclog.Logger
	workerID string
	state    stateStore
	// stateLock holds the state directory's lock (statelock.go) from New
	// until Run returns; nil without a state directory.
	stateLock *os.File
	cache     *buildCache // build keys and the executor's cache state (cache.go)
	journal   *journal    // the jobs running here (journal.go)

	flushTimeout time.Duration // finalFlushTimeout; tests shorten it
	inspectGap   time.Duration // cacheInspectGap; tests shorten it

	jobsCtx    context.Context // parent of every job's context
	jobsCancel context.CancelCauseFunc
	jobsWG     sync.WaitGroup // one per running job goroutine

	hbKick         chan struct{} // cap 1: send a heartbeat now (draining started, cache changed)
	inspectKick    chan struct{} // cap 1: ask the executor's cache for its state (a build finished)
	idle           chan struct{} // closed when shutting down and nothing is left
	stopping       chan struct{} // closed by Run when sessions must end
	abortCh        chan struct{} // closed when Shutdown's wait expires
	runDone        chan struct{} // closed when Run returns
	started        atomic.Bool
	everRegistered atomic.Bool

	idleOnce, abortOnce, stopOnce sync.Once

	// filesMu serialises every write and remove of a result file (see
	// results.go), so that a write racing a ResultAck, or a later result
	// of the same job id, never leaves a stale file behind. It guards no
	// agent state: it is taken before mu, never while holding it.
	filesMu sync.Mutex

	mu           sync.Mutex // guards the following
	jobs         map[string]*job
	results      map[string]*heldResult
	draining     bool
	shuttingDown bool
	jobsClosed   bool          // no new job goroutines may start
	sess         *session      // current registered session, nil when disconnected
	sessChanged  chan struct{} // closed and replaced whenever sess changes
	runErr       error
	filesClosed  bool // Run has written what it could: no more result writes
}

// heldResult is a result kept until a hub acknowledges it. Its fields
// other than res are guarded by Agent.mu.
type heldResult struct {
	res     *blacktreev1.JobResult
	sentOn  *session    // session it was last sent on (Register or JobResult)
	written bool        // its file is in the state directory
	timer   *time.Timer // writes it when PersistResultsAfter passes unacked; nil if none
}

// New validates cfg, applies defaults and opens the state directory (the
// worker id is created there on first use; results persisted by an earlier
// run are loaded and will be delivered after Register). It does no network
// I/O. It locks the state directory until Run returns: a directory another
// Agent holds fails with ErrStateDirLocked.
func New(cfg Config, exec executor.Executor, logger hclog.Logger) (*Agent, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if exec == nil {
		return nil, fmt.Errorf("%w: no executor", ErrConfig)
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cfg.HubAddrs = slices.Clone(cfg.HubAddrs)
	cfg.Labels = maps.Clone(cfg.Labels)
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	st := stateStore{dir: cfg.StateDir}
	id, err := st.open()
	if err != nil {
		unlockStateDir(lock)
		return nil, err
	}
	cache, err := openBuildCache(cfg.StateDir)
	if err != nil {
		unlockStateDir(lock)
		return nil, err
	}
	a := &Agent{
		cfg:         cfg,
		exec:        exec,
		workerID:    id,
		state:       st,
		stateLock:   lock,
		cache:       cache,
		inspectKick: make(chan struct{}, 1),
		log:         logger.With("worker_id", id),
		hbKick:      make(chan struct{}, 1),
		idle:        make(chan struct{}),
		stopping:    make(chan struct{}),
		abortCh:     make(chan struct{}),
		runDone:     make(chan struct{}),
		jobs:        map[string]*job{},
		results:     map[string]*heldResult{},
		sessChanged: make(chan struct{}),

		flushTimeout: finalFlushTimeout,
		inspectGap:   cacheInspectGap,
	}
	a.jobsCtx, a.jobsCancel = context.WithCancelCause(context.Background())
	if cfg.StateDir == "" {
		a.log.Warn("no state directory: the worker id changes on restart and unacknowledged results are lost on exit")
	}
	loaded, errs := st.loadResults()
	for _, err := range errs {
		a.log.Error("state dir", "error", err)
	}
	for _, r := range loaded {
		// Bounded again: an earlier version may have kept larger fields.
		jobspec.BoundResponse(r.GetResponse(), jobspec.Bounds{LogBytes: a.cfg.ResultLogBytes})
		a.results[r.GetResponse().GetJobId()] = &heldResult{res: r, written: true}
		a.log.Info("result from an earlier run awaits acknowledgement", "job_id", r.GetResponse().GetJobId())
	}
	if err := a.openJournal(); err != nil {
		unlockStateDir(lock)
		return nil, err
	}
	return a, nil
}

// openJournal reads the job journal an earlier run left, turns each job
// it left running without a result into a held, written, interrupted
// result (docs/design/worker-journal.md), and starts the journal afresh,
// unless Config.DisableJournal.
func (a *Agent) openJournal() error {
	journalDir := a.cfg.StateDir
	if a.cfg.DisableJournal {
		journalDir = ""
	}
	j, left, err := openJournal(journalDir, a.log)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, e := range left {
		if a.results[e.JobID] != nil {
			continue // finished: its result was written before the stop
		}
		res := interruptedResult(a.workerID, e, now)
		// Written before the journal is emptied below, so that a crash in
		// between reports the job again, never not at all.
		if err := a.state.saveResult(res); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		a.results[e.JobID] = &heldResult{res: res, written: true}
		a.log.Warn("job interrupted by the restart of this worker; reporting it failed", "job_id", e.JobID, "stage", executor.StageWord(e.Stage), "started", e.Started)
	}
	if err := j.start(a.cfg.Slots); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	a.journal = j
	return nil
}

// WorkerID is the agent's stable id (from the state directory).
func (a *Agent) WorkerID() string { return a.workerID }

// Run connects to the hub and serves jobs until Shutdown has drained the
// agent (returns nil) or ctx is cancelled (running jobs are cancelled and
// their results, when a hub is connected, sent; returns ErrAborted if
// anything was left unacknowledged), or, with
// Config.InitialConnectTimeout, when no hub answered in time (ErrNoHub).
// Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer close(a.runDone)
	a.log.Info("worker agent starting", "name", a.cfg.Name, "slots", a.cfg.Slots, "hubs", a.cfg.HubAddrs, "executor", a.exec.Name())

	connCtx, connCancel := context.WithCancel(context.Background())
	defer connCancel()
	connDone := make(chan struct{})
	go func() {
		defer close(connDone)
		a.connectLoop(connCtx)
	}()

	journalStop := make(chan struct{})
	journalDone := make(chan struct{})
	go func() {
		defer close(journalDone)
		a.journal.syncLoop(journalStop)
	}()

	inspectCtx, inspectCancel := context.WithCancel(context.Background())
	defer inspectCancel()
	inspectDone := make(chan struct{})
	if inspector, ok := a.exec.(executor.CacheInspector); ok {
		go func() {
			defer close(inspectDone)
			a.inspectCacheLoop(inspectCtx, inspector, a.inspectGap, a.log.Named("cache"))
		}()
	} else {
		close(inspectDone)
	}

	var giveUp <-chan time.Time
	if d := a.cfg.InitialConnectTimeout; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		giveUp = t.C
	}
	var noHub error
	for stop := false; !stop; {
		stop = true
		select {
		case <-giveUp:
			if a.everRegistered.Load() {
				giveUp, stop = nil, false
				continue
			}
			noHub = fmt.Errorf("%w: none of %v answered within %s", ErrNoHub, a.cfg.HubAddrs, a.cfg.InitialConnectTimeout)
		case <-a.idle:
			a.log.Info("drained: every job finished and every result acknowledged")
		case <-ctx.Done():
			a.log.Warn("stopping now: cancelling running jobs")
		case <-a.abortCh:
			a.log.Warn("drain timed out: cancelling running jobs")
		}
	}

	a.mu.Lock()
	a.draining, a.jobsClosed = true, true
	a.mu.Unlock()
	a.jobsCancel(errors.New("the worker is stopping"))
	a.jobsWG.Wait()
	inspectCancel()
	<-inspectDone
	// Every job has finished and journalled its end: sync and close.
	close(journalStop)
	<-journalDone
	a.journal.close()

	a.stopOnce.Do(func() { close(a.stopping) })
	t := time.NewTimer(sessionCloseGrace)
	select {
	case <-connDone:
	case <-t.C:
		connCancel()
		<-connDone
	}
	t.Stop()

	// Every session has ended (each wrote what it had sent); write what
	// is left, so that the next start re-sends it, and stop the timers.
	a.persistUnacked("worker stopping")
	a.filesMu.Lock()
	a.mu.Lock()
	a.filesClosed = true
	a.mu.Unlock()
	a.filesMu.Unlock()
	unlockStateDir(a.stateLock) // nothing writes to the directory any more

	a.mu.Lock()
	defer a.mu.Unlock()
	if noHub != nil {
		a.runErr = noHub
		return noHub
	}
	if n := len(a.results); n > 0 {
		a.log.Warn("results not acknowledged by any hub; kept for the next start", "count", n, "state_dir", a.cfg.StateDir)
		a.runErr = ErrAborted
	}
	a.log.Info("worker agent stopped")
	return a.runErr
}

// Drain stops the agent from taking new jobs (RunJob is answered
// JobRejected DRAINING) and tells the hub at once with a Heartbeat whose
// draining flag is set. Running jobs finish and their results are
// delivered. Draining is not undone. Safe to call more than once.
func (a *Agent) Drain(reason string) {
	a.mu.Lock()
	already := a.draining
	a.draining = true
	a.mu.Unlock()
	if already {
		return
	}
	a.log.Info("draining: taking no new jobs", "reason", reason)
	select {
	case a.hbKick <- struct{}{}:
	default:
	}
}

// Shutdown drains the agent and waits until every running job has finished
// and every result is acknowledged, then Run returns nil. When ctx ends
// first, running jobs are cancelled, Run returns ErrAborted and so does
// Shutdown. Idempotent; safe to call before or without Run.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	a.shuttingDown = true
	a.checkIdleLocked()
	a.mu.Unlock()
	a.Drain("shutdown")
	if !a.started.Load() {
		return nil
	}
	select {
	case <-a.runDone:
	case <-ctx.Done():
		a.abortOnce.Do(func() { close(a.abortCh) })
		<-a.runDone
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runErr
}

// checkIdleLocked closes idle once a shutting-down agent has nothing left.
func (a *Agent) checkIdleLocked() {
	if a.shuttingDown && len(a.jobs) == 0 && len(a.results) == 0 {
		a.idleOnce.Do(func() { close(a.idle) })
	}
}

// currentSession returns the registered session (nil when disconnected)
// and a channel closed at the next change.
func (a *Agent) currentSession() (*session, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sess, a.sessChanged
}

// setSessionLocked makes s current and wakes whoever waits for a change.
func (a *Agent) setSessionLocked(s *session) {
	a.sess = s
	close(a.sessChanged)
	a.sessChanged = make(chan struct{})
}
