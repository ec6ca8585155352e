package workeragent

import (
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/hbsched"
)

// Heartbeats: the schedule the hub asks for (Registered's interval and
// grid, HeartbeatInterval) and the loop that keeps it.

// minHeartbeatInterval is the floor on the hub's heartbeat interval.
const minHeartbeatInterval = 50 * time.Millisecond

// heartbeatPeriod is the period a Registered or HeartbeatInterval frame
// asks for: DefaultHeartbeatInterval when unset, at least
// minHeartbeatInterval.
func heartbeatPeriod(d *durationpb.Duration) time.Duration {
	interval := d.AsDuration()
	switch {
	case d == nil || interval <= 0:
		return DefaultHeartbeatInterval
	case interval < minHeartbeatInterval:
		return minHeartbeatInterval
	}
	return interval
}

// setSchedule hands heartbeatLoop a new schedule, replacing one it has not
// taken yet. Only the receive loop calls it.
func (s *session) setSchedule(h hbsched.Schedule) {
	for {
		select {
		case s.schedule <- h:
			return
		default:
		}
		select {
		case <-s.schedule:
		default:
		}
	}
}

// heartbeatLoop sends a Heartbeat when sched says, and at once when the
// agent starts draining; HeartbeatInterval frames replace the schedule
// (receiveLoop: a new period, a new phase on the session's grid).
func (a *Agent) heartbeatLoop(s *session, sched hbsched.Schedule) {
	t := time.NewTimer(sched.Until(time.Now()))
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case sched = <-s.schedule:
			s.log.Debug("heartbeat interval changed", "heartbeat_interval", sched.Period)
			t.Reset(sched.Until(time.Now()))
			continue
		case <-t.C:
			t.Reset(sched.Next(time.Now()))
		case <-a.hbKick:
		}
		if err := a.sendHeartbeat(s, nil); err != nil {
			return
		}
	}
}

// sendHeartbeat queues a Heartbeat on s, with the cache summary when it
// changed since the last one s carried (cache.go). s.hbMu keeps the
// heartbeats of the loop and of a finishing job in the order their
// summaries were read. It waits for room in the control queue until s
// ends or giveUp closes; a summary that was not queued goes with the
// next heartbeat.
func (a *Agent) sendHeartbeat(s *session, giveUp <-chan struct{}) error {
	s.hbMu.Lock()
	defer s.hbMu.Unlock()
	a.mu.Lock()
	hb := &blacktreev1.Heartbeat{
		SentAt:        timestamppb.Now(),
		RunningJobIds: sortedKeys(a.jobs),
		Draining:      a.draining,
	}
	a.mu.Unlock()
	sent := s.cacheSent
	hb.Cache, s.cacheSent = a.cache.summaryAfter(sent)
	select {
	case s.ctrl <- &blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: hb}}:
		return nil
	case <-s.done:
		return errSessionClosed
	case <-giveUp:
		s.cacheSent = sent
		return errGaveUp
	}
}

// errGaveUp: sendHeartbeat's giveUp closed before the frame was queued.
var errGaveUp = errors.New("heartbeat not queued: giving up")
