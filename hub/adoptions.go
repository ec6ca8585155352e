package hub

import (
	"context"
	"time"

	"github.com/blacktree/blacktree/internal/broker"
)

// Announcer is an optional Broker capability (*rabbit.Client has it):
// replicas announce the jobs they adopt from workers that register with
// them, so the replica a worker left drops those jobs instead of reporting
// them lost after its grace period
// (docs/protocol.md#between-hub-replicas). Without it a hub behaves as before: a lost report, then the
// real result from the other replica.
type Announcer interface {
	// AnnounceAdoption tells every replica, best effort.
	AnnounceAdoption(ctx context.Context, a broker.Adoption) error
	// Adoptions yields every replica's announcements, this hub's own
	// included.
	Adoptions() <-chan broker.Adoption
}

// announceTimeout bounds one round of announcements (waiting for a
// publisher connection included).
const announceTimeout = 10 * time.Second

// goAnnounce tells the other replicas, in the background, that this hub
// took over ids from workerID.
func (d *Dispatcher) goAnnounce(ids []string, workerID string) {
	if d.announcer == nil || len(ids) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.pubCtx, announceTimeout)
		defer cancel()
		for _, id := range ids {
			a := broker.Adoption{HubID: d.cfg.HubID, JobID: id, WorkerID: workerID}
			if err := d.announcer.AnnounceAdoption(ctx, a); err != nil {
				// The replica the worker left may then report the job lost
				// before this hub publishes its result: two statuses.
				d.log.Warn("adoption announcement failed", "job_id", id, "error", err)
			}
		}
	}()
}

// adoptedElsewhere handles another replica's announcement: an orphaned
// job of the same worker is dropped (no lost report: the other replica
// publishes its result); a job whose session here has not ended yet is
// marked, and dropped when that session ends.
func (d *Dispatcher) adoptedElsewhere(a broker.Adoption) {
	if a.HubID == d.cfg.HubID {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	j := d.jobs[a.JobID]
	if j == nil || j.lastWorkerID != a.WorkerID {
		return
	}
	switch j.state {
	case jobOrphaned:
		d.log.Info("job adopted by another hub; not reporting it lost", "job_id", j.id, "worker_id", a.WorkerID, "by_hub", a.HubID)
		d.removeLocked(j)
	case jobRunning:
		j.movedAway = true
	}
}
