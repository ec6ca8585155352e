package bench

import (
	"context"
	"fmt"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/hub"
	"github.com/blacktree/blacktree/internal/cluster"
)

// KillResult is one kill -9 measurement.
type KillResult struct {
	Grace    time.Duration // the hub's --lost-worker-grace
	Flagged  bool          // grace passed as a flag
	Detected time.Duration // kill -9 to the lost-job status arriving
	Error    string        // the status's error text
	Success  bool          // the status's success (must be false)
}

// PartitionResult is the silent-partition measurement.
type PartitionResult struct {
	Dead     time.Duration // partition to ListWorkers showing dead
	TimedOut bool
	// HeartbeatBound is the hub's default missed heartbeats times its
	// default interval: silence this long ends the session.
	HeartbeatBound time.Duration
	// KeepaliveBound is the hub's gRPC keepalive time plus timeout, the
	// transport's backstop.
	KeepaliveBound time.Duration
}

// FailureResult is the failure-detection scenario's outcome.
type FailureResult struct {
	Kills     []KillResult
	Partition PartitionResult
}

// RunFailure times a kill -9 with a grace of short and with the hub's
// default grace, then a silent partition.
func RunFailure(ctx context.Context, env *Env, short time.Duration, logf func(string, ...any)) (*FailureResult, error) {
	res := &FailureResult{}
	for _, grace := range []time.Duration{short, 0} {
		k, err := RunKill(ctx, env, grace, logf)
		if err != nil {
			return res, fmt.Errorf("kill -9 (grace %s): %w", grace, err)
		}
		res.Kills = append(res.Kills, *k)
	}
	p, err := RunPartition(ctx, env, logf)
	if err != nil {
		return res, fmt.Errorf("partition: %w", err)
	}
	res.Partition = *p
	return res, nil
}

// RunKill starts a hub (with --lost-worker-grace grace unless grace is 0:
// the hub's default) and one noop worker whose job never ends, kills the worker
// with SIGKILL once the job runs, and times the lost-job status.
func RunKill(ctx context.Context, env *Env, grace time.Duration, logf func(string, ...any)) (*KillResult, error) {
	res := &KillResult{Grace: grace, Flagged: grace != 0}
	if grace == 0 {
		res.Grace = hub.DefaultLostWorkerGrace
	}
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return nil, err
	}
	defer q.Delete(env.AMQPURL)
	var extra []string
	if res.Flagged {
		extra = []string{"--lost-worker-grace", grace.String()}
	}
	h, err := env.StartHub(ctx, q, extra...)
	if err != nil {
		return nil, err
	}
	defer h.Stop(20 * time.Second)
	w, err := env.StartWorker("victim", h.GRPCAddr, 1, time.Hour)
	if err != nil {
		return nil, err
	}
	defer w.Kill()
	admin, actx, closeAdmin, err := h.Admin(ctx)
	if err != nil {
		return nil, err
	}
	defer closeAdmin()
	if err := WaitLiveWorkers(actx, admin, 1, 30*time.Second); err != nil {
		return nil, err
	}
	ledger := NewLedger()
	coll, err := NewCollector(env.AMQPURL, q.Status, ledger)
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	pub, err := NewPublisher(env.AMQPURL, q.Execute, ledger, 1)
	if err != nil {
		return nil, err
	}
	const id = "victim-job"
	err = pub.Publish(ctx, id)
	if cerr := pub.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := waitJobState(actx, admin, id, blacktreev1.JobState_JOB_STATE_RUNNING, 30*time.Second); err != nil {
		return nil, err
	}
	t0 := time.Now()
	w.Kill()
	wctx, cancel := context.WithTimeout(ctx, res.Grace+60*time.Second)
	defer cancel()
	if err := ledger.WaitAnswered(wctx, 1); err != nil {
		return nil, fmt.Errorf("no lost-job status after kill -9: %w", err)
	}
	at, _ := ledger.StatusAt(id)
	res.Detected = at.Sub(t0)
	a := ledger.Account()
	res.Success = a.Failed == 0
	res.Error, _ = ledger.ErrorOf(id)
	if !a.Clean() && a.Failed != 1 {
		res.Error += " (" + a.String() + ")"
	}
	logf("kill -9: grace %s -> lost-job status after %s", res.Grace, res.Detected.Round(time.Millisecond))
	return res, nil
}

func waitJobState(ctx context.Context, admin blacktreev1.AdminServiceClient, id string, want blacktreev1.JobState, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	last := "not listed"
	if err := cluster.Poll(ctx, 20*time.Millisecond, func() bool {
		resp, err := admin.ListJobs(ctx, &blacktreev1.ListJobsRequest{})
		for _, j := range resp.GetJobs() {
			if j.GetJobId() == id {
				last = j.GetState().String()
			}
		}
		return err == nil && last == want.String()
	}); err != nil {
		return fmt.Errorf("job %s not %s (last %s): %w", id, want, last, err)
	}
	return nil
}

// RunPartition puts a silent TCP proxy between one noop worker and a hub,
// partitions it once the worker is live, and polls ListWorkers until the
// hub shows the worker dead.
func RunPartition(ctx context.Context, env *Env, logf func(string, ...any)) (*PartitionResult, error) {
	res := &PartitionResult{
		HeartbeatBound: time.Duration(hub.DefaultMissedHeartbeats) * hub.DefaultHeartbeatInterval,
		KeepaliveBound: hub.DefaultKeepaliveTime + hub.DefaultKeepaliveTimeout,
	}
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return nil, err
	}
	defer q.Delete(env.AMQPURL)
	h, err := env.StartHub(ctx, q)
	if err != nil {
		return nil, err
	}
	defer h.Stop(20 * time.Second)
	proxy, err := cluster.StartProxy(h.GRPCAddr)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	w, err := env.StartWorker("island", proxy.Addr, 1, 0)
	if err != nil {
		return nil, err
	}
	defer w.Kill()
	admin, actx, closeAdmin, err := h.Admin(ctx)
	if err != nil {
		return nil, err
	}
	defer closeAdmin()
	if err := WaitLiveWorkers(actx, admin, 1, 30*time.Second); err != nil {
		return nil, err
	}
	proxy.Partition()
	t0 := time.Now()
	const limit = 3 * time.Minute
	pctx, cancel := context.WithTimeout(actx, limit)
	defer cancel()
	err = cluster.Poll(pctx, 50*time.Millisecond, func() bool {
		resp, err := admin.ListWorkers(pctx, &blacktreev1.ListWorkersRequest{})
		for _, wi := range resp.GetWorkers() {
			if err == nil && wi.GetState() == blacktreev1.WorkerState_WORKER_STATE_DEAD {
				return true
			}
		}
		return false
	})
	switch {
	case err == nil:
		res.Dead = time.Since(t0)
		logf("partition: worker dead after %s", res.Dead.Round(time.Millisecond))
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		res.TimedOut, res.Dead = true, limit
	}
	return res, nil
}
