package workeragent

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

func intervalFrame(d time.Duration) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_HeartbeatInterval{
		HeartbeatInterval: &blacktreev1.HeartbeatInterval{Interval: durationpb.New(d)}}}
}

func isHeartbeat(m *blacktreev1.WorkerMessage) bool { return m.GetHeartbeat() != nil }

// heartbeatsWithin counts the heartbeats s's worker sends within d.
func heartbeatsWithin(t *testing.T, s *fakehub.Stream, d time.Duration) int {
	t.Helper()
	quiet := time.NewTimer(d)
	defer quiet.Stop()
	beats := 0
	for {
		select {
		case m, ok := <-s.Recv:
			if !ok {
				t.Fatalf("stream ended")
			}
			if isHeartbeat(m) {
				beats++
			}
		case <-quiet.C:
			return beats
		}
	}
}

// The worker says it takes HeartbeatInterval frames, and beats at the
// period the latest one gives.
func TestHeartbeatIntervalUpdates(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
	startAgent(t, Config{HubAddrs: []string{hub.Addr}}, executor.Noop{})
	s := hub.NextStream(t, wait)
	if !s.Register.GetHeartbeatIntervalUpdates() {
		t.Fatalf("Register.heartbeat_interval_updates = false, want true")
	}

	// An hour, then 50ms: heartbeats within the test's patience.
	s.Send(t, intervalFrame(50*time.Millisecond))
	for range 3 {
		s.WaitFor(t, wait, "heartbeat at the 50ms period", isHeartbeat)
	}

	// Back to an hour: at most the beats already on their way arrive
	// within 20 periods of the old one.
	s.Send(t, intervalFrame(time.Hour))
	if beats := heartbeatsWithin(t, s, time.Second); beats > 2 {
		t.Errorf("heartbeats in the second after HeartbeatInterval(1h) = %d, want at most 2 (sent before it was read)", beats)
	}

	// An unset interval means the agent's default, not a busy loop.
	if got := heartbeatPeriod(nil); got != DefaultHeartbeatInterval {
		t.Errorf("heartbeatPeriod(nil) = %v, want %v", got, DefaultHeartbeatInterval)
	}
	if got := heartbeatPeriod(durationpb.New(time.Millisecond)); got != minHeartbeatInterval {
		t.Errorf("heartbeatPeriod(1ms) = %v, want %v", got, minHeartbeatInterval)
	}
}

// On the hub's grid the worker keeps its heartbeats at one phase of the
// wall clock: with a grid of the whole interval, at whole seconds.
func TestHeartbeatGrid(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Second, HeartbeatGrid: time.Second})
	startAgent(t, Config{HubAddrs: []string{hub.Addr}}, executor.Noop{})
	s := hub.NextStream(t, wait)
	for i := range 3 {
		m := s.WaitFor(t, wait, "a heartbeat", isHeartbeat)
		// Sent when the timer fired: within 100ms of a whole second, as
		// a random phase would be one time in ten.
		at := m.GetHeartbeat().GetSentAt().AsTime()
		if off := time.Duration(at.UnixNano()) % time.Second; off > 100*time.Millisecond {
			t.Errorf("heartbeat %d sent at %s: %v past a whole second, want at most 100ms", i, at.Format(time.StampMilli), off)
		}
	}
}
