package hub

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// metrics are the hub's Prometheus metrics, on a registry of its own.
// Labels never carry job data.
type metrics struct {
	registry   *prometheus.Registry
	dispatched prometheus.Counter
	succeeded  prometheus.Counter
	failed     prometheus.Counter
	lost       prometheus.Counter
	duplicate  prometheus.Counter
	invalid    prometheus.Counter
	requeued   prometheus.Counter
	latency    prometheus.Histogram
	publish    prometheus.Histogram
	// Build caches: steps answered from a cache or run, by the results'
	// cached_steps and total_steps; offers to a worker whose cache was
	// warm or cold for the job.
	cachedSteps, ranSteps  prometheus.Counter
	warmPlaced, coldPlaced prometheus.Counter
	// refused counts worker frames refused for identity or ownership
	// (docs/protocol.md#ownership), by reason.
	refused *prometheus.CounterVec
	// Register frames refused, by reason (admission.go).
	registerRefusals *prometheus.CounterVec
	// gRPC connections closed before authentication (conns.go), by limit.
	connsRefused    *prometheus.CounterVec
	connsIdleClosed prometheus.Counter
}

// Reasons of blacktree_worker_frames_refused_total.
const (
	refusedIdentity        = "identity_taken"   // Register of an id held by another credential
	refusedNotOwner        = "not_owner"        // a job offered to or running on another session
	refusedNeverDispatched = "never_dispatched" // a job this deployment did not dispatch to the worker
	refusedOtherDeployment = "other_deployment" // a job of another deployment
)

// Reasons a Register is refused (the reason label of
// blacktree_register_refused_total).
const (
	refusedInvalid      = "invalid"       // a field over its bound, or missing
	refusedDenied       = "denied"        // the worker id is denied (DenyWorker)
	refusedSessionLimit = "session_limit" // the credential holds MaxSessionsPerCredential workers
	refusedProtocol     = "protocol"      // a worker protocol version outside the hub's range (handshake.go)
)

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "blacktree", Name: name, Help: help})
}

func newMetrics() *metrics {
	m := &metrics{
		registry:   prometheus.NewRegistry(),
		dispatched: counter("jobs_dispatched_total", "Jobs accepted by a worker (delivery acked)."),
		succeeded:  counter("jobs_succeeded_total", "Successful job results published."),
		failed:     counter("jobs_failed_total", "Failed job results published (worker-reported or lost)."),
		lost:       counter("jobs_lost_total", "Jobs reported lost after their worker's grace period."),
		duplicate:  counter("jobs_duplicate_total", "Deliveries dropped because their jobId was already in flight."),
		invalid:    counter("jobs_invalid_total", "Invalid JobRequests (reported failed or dead-lettered)."),
		requeued:   counter("jobs_requeued_total", "Deliveries nacked with requeue (no free worker, draining)."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "blacktree",
			Name:      "dispatch_latency_seconds",
			Help:      "Time from delivery to JobAccepted.",
			Buckets:   prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		// The result leg's share in the hub and the broker: a slow or
		// flow-controlled broker shows here first. Doubling buckets from
		// 0.25 ms to 32 s, fine enough to read percentiles from.
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "blacktree",
			Name:      "status_publish_seconds",
			Help:      "Time from the hub taking up a status for publishing (a JobResult arrived, or a job was reported lost or invalid) to the broker's confirm, retries included.",
			Buckets:   prometheus.ExponentialBuckets(0.00025, 2, 18),
		}),
	}
	steps := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "blacktree",
		Name:      "build_steps_total",
		Help:      "Build steps in the jobs' results, by whether the builder's cache answered them (JobResponse cached_steps and total_steps).",
	}, []string{"cached"})
	m.cachedSteps, m.ranSteps = steps.WithLabelValues("true"), steps.WithLabelValues("false")
	placements := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "blacktree",
		Name:      "placements_total",
		Help:      "Jobs offered to a worker, by whether its build cache held the job's build key (warm) or not (cold).",
	}, []string{"cache"})
	m.warmPlaced, m.coldPlaced = placements.WithLabelValues("warm"), placements.WithLabelValues("cold")
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "blacktree",
		Name:      "worker_frames_refused_total",
		Help:      "Worker frames refused: a Register of a worker id held by another credential, or a JobAccepted, JobRejected, JobResult or claimed running job for a job the worker does not hold, by reason.",
	}, []string{"reason"})
	for _, r := range []string{refusedIdentity, refusedNotOwner, refusedNeverDispatched, refusedOtherDeployment} {
		m.refused.WithLabelValues(r) // exported at 0 from the start
	}
	m.registerRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "blacktree",
		Name:      "register_refused_total",
		Help:      "Worker Register frames refused, by reason: invalid (a field missing or over its bound), denied (btctl deny), session_limit (--max-sessions-per-token), protocol (a worker protocol version the hub does not speak).",
	}, []string{"reason"})
	for _, r := range []string{refusedInvalid, refusedDenied, refusedSessionLimit, refusedProtocol} {
		m.registerRefusals.WithLabelValues(r) // present at 0 from the start
	}
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "blacktree",
		Name:      "connections_refused_total",
		Help:      "gRPC connections closed as soon as accepted, by the limit they were over: total (--max-conns) or per_ip (--max-conns-per-ip).",
	}, []string{"limit"})
	m.connsRefused.WithLabelValues("total")
	m.connsRefused.WithLabelValues("per_ip")
	m.connsIdleClosed = counter("connections_unauthenticated_closed_total",
		"gRPC connections closed for carrying no authenticated call within --unauthenticated-conn-timeout of their accept.")
	m.registry.MustRegister(m.registerRefusals, m.connsRefused, m.connsIdleClosed)
	m.registry.MustRegister(m.refused, steps, placements, m.dispatched, m.succeeded, m.failed, m.lost, m.duplicate, m.invalid, m.requeued, m.latency, m.publish,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// buildSteps counts a result's build steps.
func (m *metrics) buildSteps(resp *blacktreev1.JobResponse) {
	cached, total := resp.GetCachedSteps(), resp.GetTotalSteps()
	cached = min(cached, total) // a worker's miscount is not a negative count
	m.cachedSteps.Add(float64(cached))
	m.ranSteps.Add(float64(total - cached))
}

// registerRefused counts a refused Register.
func (m *metrics) registerRefused(reason string) { m.registerRefusals.WithLabelValues(reason).Inc() }

// connRefused counts a connection closed at accept for being over limit.
func (m *metrics) connRefused(limit string) { m.connsRefused.WithLabelValues(limit).Inc() }

// placement counts an offer to a worker warm or cold for the job.
func (m *metrics) placement(warm bool) {
	if warm {
		m.warmPlaced.Inc()
	} else {
		m.coldPlaced.Inc()
	}
}

// registerState adds the gauges that read the live state.
func (m *metrics) registerState(wm *WorkerManager, d *Dispatcher) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "blacktree",
		Name:      "held_deliveries",
		Help:      "Deliveries held unacked while waiting for a free worker.",
	}, func() float64 { return float64(d.heldCount()) }))
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "blacktree",
		Name:      "heartbeat_interval_seconds",
		Help:      "Heartbeat interval the hub gives its fleet now (it grows with the fleet; --max-heartbeat-rate).",
	},
		func() float64 { return wm.heartbeatInterval().Seconds() }))
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "blacktree",
		Name:      "worker_cache_bytes",
		Help:      "Bytes of build cache the live workers report holding, summed.",
	}, func() float64 { return float64(wm.cacheBytes()) }))
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "blacktree",
		Name:      "denied_workers",
		Help:      "Worker ids an operator denied (btctl deny); their Register is refused until the hub restarts.",
	}, func() float64 { return float64(wm.deniedCount()) }))
	m.registry.MustRegister(&stateCollector{
		m: wm,
		desc: prometheus.NewDesc("blacktree_workers",
			"Workers known to this hub, by state.", []string{"state"}, nil),
	})
}

type stateCollector struct {
	m    *WorkerManager
	desc *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.m.countByState()
	for _, s := range allStates {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), s.String())
	}
}
