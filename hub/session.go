package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Reasons a session ends, as context causes.
var (
	// ErrReplaced: a new stream registered with the same worker_id.
	ErrReplaced = errors.New("replaced by a new session")
	// ErrMissedHeartbeats: no frame for MissedHeartbeats intervals.
	ErrMissedHeartbeats = errors.New("missed heartbeats")
	// ErrSlowWorker: the worker did not read its frames (send queue full).
	ErrSlowWorker = errors.New("send queue full")
	// ErrStreamClosed: the worker closed its stream cleanly.
	ErrStreamClosed = errors.New("stream closed by the worker")
	// ErrConnectionLost: the worker's connection broke (process killed,
	// network reset, keepalive timeout) without a clean close.
	ErrConnectionLost = errors.New("connection lost")
	// ErrHubStopping: the hub is shutting down.
	ErrHubStopping = errors.New("hub shutting down")
)

// Worker is one connected agent: one registered Connect stream. It owns the
// stream's sending side through one sender goroutine fed by a bounded
// channel; no other goroutine calls Send. Its fields are set at
// registration and never change.
type Worker struct {
	id        string
	sessionID string
	name      string
	version   string
	addr      string
	labels    map[string]string
	slots     int
	connected time.Time
	log       hclog.Logger

	ctx    context.Context // done when the session ends; Cause says why
	cancel context.CancelCauseFunc
	sendCh chan *blacktreev1.HubMessage
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.id }

// kill ends the session with cause (first cause wins).
func (w *Worker) kill(cause error) { w.cancel(cause) }

// send queues m for the sender goroutine without blocking. A full queue
// means the worker does not read: the session is ended. It reports whether
// m was queued.
func (w *Worker) send(m *blacktreev1.HubMessage) bool {
	if w.ctx.Err() != nil {
		return false
	}
	select {
	case w.sendCh <- m:
		return true
	default:
		w.log.Warn("send queue full; closing the session")
		w.kill(ErrSlowWorker)
		return false
	}
}

// sendLoop is the only goroutine that calls Send on the stream. It stops
// when the session ends or a Send fails.
func (w *Worker) sendLoop(send func(*blacktreev1.HubMessage) error) {
	for {
		select {
		case <-w.ctx.Done():
			return
		case m := <-w.sendCh:
			if err := send(m); err != nil {
				w.kill(fmt.Errorf("send: %w", err))
				return
			}
		}
	}
}

func runJobMsg(req *blacktreev1.JobRequest) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_RunJob{RunJob: &blacktreev1.RunJob{Job: req}}}
}

func resultAckMsg(jobID string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_ResultAck{ResultAck: &blacktreev1.ResultAck{JobId: jobID}}}
}

func cancelJobMsg(jobID, reason string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_CancelJob{CancelJob: &blacktreev1.CancelJob{JobId: jobID, Reason: reason}}}
}

func drainMsg(reason string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Drain{Drain: &blacktreev1.Drain{Reason: reason}}}
}
