package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// Broker is what the hub needs from the message broker. *rabbit.Client
// implements it; its lifecycle (Connect/Run/Shutdown) belongs to the caller,
// which must keep it running until the Hub's Run has returned.
type Broker interface {
	// Deliveries yields execute-queue deliveries; closed when the broker
	// adapter stops.
	Deliveries() <-chan broker.Delivery
	// Publish publishes to the status queue and returns once confirmed.
	Publish(ctx context.Context, m broker.Message) error
	// StopConsuming stops new deliveries (drain).
	StopConsuming(ctx context.Context) error
	// Ready reports whether the broker connections are up.
	Ready() bool
}

// Job states used in the job table (the wire enum doubles as the typed
// state).
const (
	jobPending    = blacktreev1.JobState_JOB_STATE_PENDING
	jobOffered    = blacktreev1.JobState_JOB_STATE_OFFERED
	jobRunning    = blacktreev1.JobState_JOB_STATE_RUNNING
	jobOrphaned   = blacktreev1.JobState_JOB_STATE_ORPHANED
	jobPublishing = blacktreev1.JobState_JOB_STATE_PUBLISHING
)

// job is one in-flight job. Guarded by Dispatcher.mu.
type job struct {
	id           string
	req          *blacktreev1.JobRequest // nil for jobs adopted from a Register
	del          *broker.Delivery        // unsettled delivery; nil once acked
	corrID       string
	state        blacktreev1.JobState
	w            *Worker         // session it is offered to / running on
	lastWorkerID string          // worker id it last ran on (for lost reports)
	tried        map[string]bool // worker ids that rejected or timed out
	held         bool
	// cacheKey is the job's build key (jobspec.CacheKey), for
	// cache-aware placement.
	cacheKey string
	// warmUntil is when the job stops waiting for a busy worker whose
	// cache holds its build key (Config.AffinityWait); zero: it never
	// waits. waitingWarm: it is held for one now, until warmUntil.
	warmUntil   time.Time
	waitingWarm bool
	received    time.Time
	accepted    time.Time
	timer       *time.Timer // hold, accept or grace timer
	timerArms   int         // counts arms; a fired timer of an earlier arm does nothing
	// movedAway: another replica adopted the job from its worker while the
	// session here had not ended yet; ending it drops the job.
	movedAway bool
	// eventSeq is the seq of the job's latest event from this hub
	// (events.go); 0 before its first.
	eventSeq uint64
	// cancelled: a cancel came for the job (cancel.go); it is never
	// offered again, and a worker that runs it is told to stop.
	cancelled    bool
	cancelReason string
	// stage is the stage the job's session last reported (JobProgress,
	// progress.go); unspecified until its first report on that session.
	stage blacktreev1.JobStage
}

// effects are actions decided under mu and run after it is released
// (broker I/O never happens under a lock).
type effects []func()

func (fx effects) run() {
	for _, f := range fx {
		f()
	}
}

// Dispatcher moves jobs from the broker to workers and results back. State
// has one owner: mu.
type Dispatcher struct {
	cfg       Config
	log       hclog.Logger
	b         Broker
	announcer Announcer // b's adoption announcements; nil when b has none
	pacer     Pacer     // b's pacing to the hub's capacity; nil when b has none
	canceller Canceller // b's cancel queue and announcements; nil when b has none
	tickets   ticketer
	m         *WorkerManager
	metrics   *metrics
	// ledger is the orphan ledger's writer; nil without one (ledger.go).
	ledger *ledgerWriter
	// events publishes job events; nil without an events exchange
	// (events.go).
	events *eventPublisher
	// tap keeps running jobs' output for the console (logtap.go); nil
	// without a console.
	tap *logTap

	pubCtx    context.Context // ends at hard stop: publishes give up
	pubCancel context.CancelFunc
	wg        sync.WaitGroup // publish goroutines, until each has finished

	mu       sync.Mutex // guards the following
	jobs     map[string]*job
	held     []*job // PENDING jobs waiting for a free worker, oldest first
	draining bool
	stopped  bool          // set by stop: no new publish goroutines
	changed  chan struct{} // closed and replaced when a job leaves the table
	// tombs: cancels of jobs not held here; cancelLog bounds their log.
	tombs     *tombstones
	cancelLog cancelLogLimiter
}

func newDispatcher(cfg Config, b Broker, m *WorkerManager, hubMetrics *metrics, log hclog.Logger) *Dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	announcer, _ := b.(Announcer)
	pacer, _ := b.(Pacer)
	canceller, _ := b.(Canceller)
	d := &Dispatcher{
		cfg:       cfg,
		log:       log,
		b:         b,
		announcer: announcer,
		pacer:     pacer,
		canceller: canceller,
		tombs:     newTombstones(cfg.CancelTombstoneTTL, cfg.MaxCancelTombstones),
		tickets:   ticketer{deployment: cfg.DeploymentID, key: cfg.DispatchKey},
		m:         m,
		metrics:   hubMetrics,
		pubCtx:    ctx,
		pubCancel: cancel,
		jobs:      map[string]*job{},
		changed:   make(chan struct{}),
	}
	d.events = newEventPublisher(b, cfg.HubID, hubMetrics, log.Named("events"))
	if l, ok := b.(Ledger); ok && l.LedgerEnabled() {
		d.ledger = newLedgerWriter(cfg, l, d.ledgerHolding, log.Named("ledger"))
	}
	return d
}

// run consumes deliveries until ctx ends or the channel closes.
func (d *Dispatcher) run(ctx context.Context) {
	deliveries := d.b.Deliveries()
	var adoptions <-chan broker.Adoption
	if d.announcer != nil {
		adoptions = d.announcer.Adoptions()
	}
	var cancels <-chan broker.Delivery
	var cancelAnns <-chan broker.CancelRequest
	if d.canceller != nil {
		if d.canceller.CancelEnabled() {
			cancels = d.canceller.CancelDeliveries()
		}
		cancelAnns = d.canceller.CancelAnnouncements()
	}
	d.pace()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.m.capacityChanged:
			d.pace()
		case del, ok := <-deliveries:
			if !ok {
				d.log.Info("delivery channel closed")
				return
			}
			d.handleDelivery(del)
		case a := <-adoptions:
			d.adoptedElsewhere(a)
		case del := <-cancels:
			d.handleCancelDelivery(del)
		case r := <-cancelAnns:
			d.cancelAnnounced(r)
		}
	}
}

func (d *Dispatcher) handleDelivery(del broker.Delivery) {
	req, _, err := jobspec.DecodeRequest(del.Body)
	if err == nil {
		err = jobspec.Validate(req, d.cfg.Policy)
	}
	if err != nil {
		d.metrics.invalid.Inc()
		jobID := req.GetJobId()
		var de *jobspec.DecodeError
		if errors.As(err, &de) {
			jobID = de.JobID
		}
		if jobspec.ValidJobID(jobID) != nil {
			d.log.Warn("unreadable job request; rejecting without requeue", "error", err, "bytes", len(del.Body), "message_id", safeID(del.MessageID))
			if nerr := del.Nack(false); nerr != nil {
				d.log.Warn("reject failed", "error", nerr)
			}
			return
		}
		d.mu.Lock()
		_, dup := d.jobs[jobID]
		d.mu.Unlock()
		if dup {
			d.dropDuplicate(jobID, del)
			return
		}
		d.log.Warn("invalid job request; reporting it failed", "job_id", jobID, "error", err)
		resp := jobspec.Failed(jobID, blacktreev1.JobStage_JOB_STAGE_VALIDATE, err)
		d.goPublish(jobID, resp, del.CorrelationID, "", &del)
		return
	}

	d.mu.Lock()
	var fx effects
	switch {
	case d.draining:
		fx = append(fx, func() { _ = del.Nack(true) })
	case d.jobs[req.GetJobId()] != nil:
		j := d.jobs[req.GetJobId()]
		if j.del != nil {
			// Not accepted yet: the job's delivery may be stale (its channel
			// died and the broker redelivered it as this one). Keep the new
			// delivery and settle the old one, so the message is never
			// dropped while the job is still unaccepted.
			old := j.del
			j.del, j.corrID = &del, del.CorrelationID
			d.mu.Unlock()
			d.dropDuplicate(j.id, *old)
			return
		}
		d.mu.Unlock()
		d.dropDuplicate(req.GetJobId(), del)
		return
	default:
		j := &job{
			id:       req.GetJobId(),
			req:      req,
			del:      &del,
			corrID:   del.CorrelationID,
			state:    jobPending,
			tried:    map[string]bool{},
			received: time.Now(),
			cacheKey: jobspec.CacheKey(req),
		}
		if d.cfg.AffinityWait > 0 && !d.cfg.DisableCacheAffinity {
			j.warmUntil = j.received.Add(d.cfg.AffinityWait)
		}
		d.jobs[j.id] = j
		d.markIfCancelledLocked(j)
		d.log.Debug("job received", jobspec.LogFields(req)...)
		d.assignLocked(j, &fx)
	}
	d.mu.Unlock()
	fx.run()
}

func (d *Dispatcher) dropDuplicate(jobID string, del broker.Delivery) {
	d.metrics.duplicate.Inc()
	d.log.Info("job already in flight; dropping the duplicate delivery", "job_id", jobID, "redelivered", del.Redelivered)
	if err := del.Ack(); err != nil {
		d.log.Debug("ack of duplicate failed", "job_id", jobID, "error", err)
	}
}

// safeID bounds an AMQP property before it is logged.
func safeID(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

// assignLocked offers j to a free worker, or holds it: for a busy worker
// whose cache is warm for it while its affinity wait lasts, else for any
// free worker up to HoldTimeout.
func (d *Dispatcher) assignLocked(j *job, fx *effects) {
	if j.cancelled {
		d.answerCancelledLocked(j)
		return
	}
	if d.draining {
		d.requeueLocked(j, fx, "hub draining")
		return
	}
	r := d.m.pick(pickRequest{
		jobID:       j.id,
		labels:      j.req.GetWorkerLabels(),
		exclude:     j.tried,
		cacheKey:    j.cacheKey,
		preferWarm:  !d.cfg.DisableCacheAffinity,
		waitForWarm: !j.warmUntil.IsZero() && time.Now().Before(j.warmUntil),
	})
	switch {
	case r.waiting:
		j.state, j.w = jobPending, nil
		if !j.held {
			j.held = true
			d.held = append(d.held, j)
		}
		if !j.waitingWarm {
			j.waitingWarm = true
			d.armLocked(j, time.Until(j.warmUntil), d.affinityWaitExpiredLocked)
			d.log.Debug("warm worker busy; holding job for it", "job_id", j.id, "until", j.warmUntil)
		}
		return
	case r.w == nil:
		j.state, j.w = jobPending, nil
		if !j.held || j.waitingWarm {
			if !j.held {
				j.held = true
				d.held = append(d.held, j)
			}
			j.waitingWarm = false
			d.armLocked(j, d.cfg.HoldTimeout, d.holdExpiredLocked)
			d.log.Debug("no free worker; holding job", "job_id", j.id)
		}
		return
	}
	w := r.w
	d.unholdLocked(j)
	d.metrics.placement(r.warm)
	j.state, j.w, j.lastWorkerID = jobOffered, w, w.id
	d.armLocked(j, d.cfg.AcceptTimeout, d.acceptExpiredLocked)
	w.send(runJobMsg(j.req, d.tickets.issue(w.id, w.cred, j.id)))
	d.log.Debug("job offered", "job_id", j.id, "worker_id", w.id, "warm", r.warm)
}

// affinityWaitExpiredLocked: no worker warm for j freed a slot within
// Config.AffinityWait; offer it to any free worker, or hold it as usual.
func (d *Dispatcher) affinityWaitExpiredLocked(j *job, fx *effects) {
	if j.state == jobPending {
		d.assignLocked(j, fx)
	}
}

func (d *Dispatcher) unholdLocked(j *job) {
	if !j.held {
		return
	}
	j.held, j.waitingWarm = false, false
	for i, h := range d.held {
		if h == j {
			d.held = append(d.held[:i], d.held[i+1:]...)
			break
		}
	}
}

// requeueLocked gives j's delivery back to the broker and forgets j.
func (d *Dispatcher) requeueLocked(j *job, fx *effects, why string) {
	del := j.del
	d.removeLocked(j)
	if del != nil {
		d.metrics.requeued.Inc()
		d.log.Info("requeueing job", "job_id", j.id, "reason", why)
		*fx = append(*fx, func() {
			if err := del.Nack(true); err != nil {
				d.log.Debug("requeue failed (the broker requeues stale deliveries itself)", "job_id", j.id, "error", err)
			}
		})
	}
}

// removeLocked drops j from the table and stops its timer.
func (d *Dispatcher) removeLocked(j *job) {
	d.unholdLocked(j)
	d.stopTimerLocked(j)
	if d.jobs[j.id] == j {
		if d.tap != nil {
			d.tap.leave(j.id) // a finished job keeps its end
		}
		delete(d.jobs, j.id)
		close(d.changed)
		d.changed = make(chan struct{})
	}
}

func (d *Dispatcher) stopTimerLocked(j *job) {
	j.timerArms++
	if j.timer != nil {
		j.timer.Stop()
		j.timer = nil
	}
}

// armLocked (re)arms j's single timer; a timer armed earlier is void.
func (d *Dispatcher) armLocked(j *job, after time.Duration, fn func(*job, *effects)) {
	d.stopTimerLocked(j)
	arm := j.timerArms
	j.timer = time.AfterFunc(after, func() {
		d.mu.Lock()
		var fx effects
		if d.jobs[j.id] == j && j.timerArms == arm {
			fn(j, &fx)
		}
		d.mu.Unlock()
		fx.run()
	})
}

func (d *Dispatcher) holdExpiredLocked(j *job, fx *effects) {
	if j.state == jobPending {
		d.requeueLocked(j, fx, "no free worker within the hold timeout")
	}
}

func (d *Dispatcher) acceptExpiredLocked(j *job, fx *effects) {
	if j.state != jobOffered {
		return
	}
	w := j.w
	d.log.Warn("worker did not answer RunJob in time; offering the job elsewhere", "job_id", j.id, "worker_id", w.id)
	w.send(cancelJobMsg(j.id, "not accepted in time"))
	d.m.release(w, j.id)
	j.tried[w.id] = true
	d.assignLocked(j, fx)
}

// retryHeldLocked offers held jobs again (a slot may have freed up).
func (d *Dispatcher) retryHeldLocked(fx *effects) {
	for _, j := range append([]*job(nil), d.held...) {
		d.assignLocked(j, fx)
	}
}

func (d *Dispatcher) retryHeld() {
	d.mu.Lock()
	var fx effects
	d.retryHeldLocked(&fx)
	d.mu.Unlock()
	fx.run()
}

// heldCount is the number of held deliveries (metrics).
func (d *Dispatcher) heldCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.held)
}

// list describes in-flight jobs, sorted by id. Never the token.
func (d *Dispatcher) list() []*blacktreev1.JobInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*blacktreev1.JobInfo, 0, len(d.jobs))
	for _, j := range d.jobs {
		out = append(out, jobInfoLocked(j))
	}
	sortJobs(out)
	return out
}
