package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Send-queue limits (see Worker.send).
const (
	// slowReaderAfter: a sender that has taken no frame for this long
	// while the queue is past its bound is blocked by a worker that does
	// not read.
	slowReaderAfter = 10 * time.Second
	// hardQueueFactor × the bound is the most frames ever queued.
	hardQueueFactor = 32
)

// Reasons a session ends (Worker.endCause).
var (
	// ErrReplaced is the cause of a session ended because a new stream
	// registered with the same worker_id.
	ErrReplaced = errors.New("replaced by a new session")
	// ErrMissedHeartbeats is the cause of a session that sent no frame for
	// MissedHeartbeats intervals.
	ErrMissedHeartbeats = errors.New("missed heartbeats")
	// ErrSlowWorker is the cause of a session whose worker did not read its
	// frames.
	ErrSlowWorker = errors.New("worker does not read its frames")
	// ErrStreamClosed is the cause of a session whose worker closed its
	// stream cleanly.
	ErrStreamClosed = errors.New("stream closed by the worker")
	// ErrConnectionLost is the cause of a session whose connection broke
	// (process killed, network reset, keepalive timeout) without a clean
	// close.
	ErrConnectionLost = errors.New("connection lost")
	// ErrRevoked is the cause of a session whose worker's credentials were
	// revoked (token reload).
	ErrRevoked = errors.New("worker credentials revoked")
	// ErrDenied is the cause of a session ended because an operator
	// denied its worker (DenyWorker).
	ErrDenied = errors.New("worker denied by an operator")
	// ErrHubStopping is the cause of every session ended because the hub is
	// shutting down.
	ErrHubStopping = errors.New("hub shutting down")
)

// Worker is one connected agent: one registered Connect stream.
//
// It owns the stream's sending side. Frames are queued by send (bounded,
// never blocking) and written by one sender that runs only while frames
// are queued: it starts when the queue goes from empty to non-empty and
// returns when it is empty again, so an idle worker costs no goroutine for
// sending (docs/design/idle-worker-memory.md). At most one sender runs at a time,
// so no two goroutines ever call Send. The
// identity fields are set at registration and never change.
type Worker struct {
	id        string
	sessionID string
	name      string
	version   string
	addr      string
	// cred is the key of the credential the stream was opened with
	// (Config.Credential); the worker id belongs to it.
	cred   string
	labels map[string]string
	slots  int
	// intervalUpdates: the worker applies HeartbeatInterval frames.
	intervalUpdates bool
	connected       time.Time
	log             hclog.Logger
	entry           *workerEntry // the manager's entry for this session; guarded by WorkerManager.mu

	// The session's end latch: kill sets cause and closes done once, then
	// runs onEnd on its own goroutine (owned by wg). A plain latch rather
	// than a context: a derived context costs an idle worker ~1.3 KiB of
	// parent-child bookkeeping (docs/design/idle-worker-memory.md).
	endOnce sync.Once
	cause   error         // why the session ended; written before done closes
	done    chan struct{} // closed when the session ends
	onEnd   func()        // set before the session is visible to others

	stream   func(*blacktreev1.HubMessage) error // the stream's Send
	authCtx  context.Context                     // the stream's context: its credentials, for Config.Authorized
	maxQueue int                                 // bound on queued frames
	wg       *sync.WaitGroup                     // counts the sender runs and onEnd

	receiving atomic.Bool // the handler is in its receive loop

	sendMu     sync.Mutex // guards the following
	queue      []*blacktreev1.HubMessage
	sending    bool          // a sender goroutine is running
	held       bool          // frames only queue until release (see Hub.register)
	progress   time.Time     // when the sender last took a frame
	senderExit chan struct{} // closed when the running sender exits, if set
	closeTimer *time.Timer   // endSession's pending connection close, if any

	// protocol is the worker protocol version of the session (0 taken as
	// 1) and features the optional behaviours the worker announced
	// (handshake.go); set at registration, like the identity fields.
	protocol uint32
	features []string
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.id }

// kill ends the session with cause (first cause wins).
func (w *Worker) kill(cause error) {
	w.endOnce.Do(func() {
		w.cause = cause
		close(w.done)
		if w.onEnd != nil {
			w.wg.Go(w.onEnd)
		}
	})
}

// ended reports whether the session has ended.
func (w *Worker) ended() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// endCause is why the session ended; nil while it has not.
func (w *Worker) endCause() error {
	if !w.ended() {
		return nil
	}
	return w.cause
}

// send queues m for the stream without blocking; an ended session queues
// nothing. A worker that does not read its frames has its session ended
// (see below). It reports whether m was queued.
func (w *Worker) send(m *blacktreev1.HubMessage) bool {
	w.sendMu.Lock()
	if w.ended() {
		w.sendMu.Unlock()
		return false
	}
	if n := len(w.queue); n >= w.maxQueue {
		// Past the bound the worker is only a slow reader if the sender
		// has stopped making progress (a Send blocked by flow control):
		// a burst of ResultAcks — one per publish confirm, which the
		// broker may hand back in bulk — can outgrow any per-slot bound
		// while the worker reads fine. The hard cap bounds memory.
		stuck := w.sending && time.Since(w.progress) > slowReaderAfter
		if stuck || n >= hardQueueFactor*w.maxQueue {
			w.sendMu.Unlock()
			w.log.Warn("worker does not read its frames; closing the session", "queued", n, "sender_stuck", stuck)
			w.kill(ErrSlowWorker)
			return false
		}
	}
	w.queue = append(w.queue, m)
	w.unlockAndStart()
	return true
}

// unlockAndStart releases sendMu and then starts the sender when frames
// are queued and it may run (startLocked). Call it with sendMu held.
func (w *Worker) unlockAndStart() {
	start := len(w.queue) > 0 && w.startLocked()
	w.sendMu.Unlock()
	if start {
		w.startSender()
	}
}

// release lets a held session's sender start and write what has queued.
func (w *Worker) release() {
	w.sendMu.Lock()
	w.held = false
	w.unlockAndStart()
}

// startLocked reports whether the caller must start the sender (then it
// counts as running). Call it with sendMu held and frames queued.
func (w *Worker) startLocked() bool {
	if w.sending || w.held || w.stream == nil {
		return false
	}
	w.sending, w.progress = true, time.Now()
	return true
}

// startSender runs the sender on a goroutine of its own, owned by w.wg.
func (w *Worker) startSender() {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.sendQueued()
	}()
}

// sendQueued is the sender: it writes queued frames until the queue is
// empty or a Send fails. Frames queued before the session ended are still
// sent (a ResultAck spares the worker a re-send); send queues no new ones.
func (w *Worker) sendQueued() {
	for {
		w.sendMu.Lock()
		if len(w.queue) == 0 {
			w.queue = nil // an idle worker keeps no queue array
			w.sending = false
			if w.senderExit != nil {
				close(w.senderExit)
				w.senderExit = nil
			}
			w.sendMu.Unlock()
			return
		}
		m := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.progress = time.Now()
		w.sendMu.Unlock()
		if err := w.stream(m); err != nil {
			w.kill(fmt.Errorf("send: %w", err))
			w.sendMu.Lock()
			w.queue = w.queue[:0]
			w.sendMu.Unlock()
		}
	}
}

// flushSend waits at most d for the sender to write what is queued (an
// ended session queues nothing new, so the queue only shrinks): it
// finishes at once unless it is blocked in Send (flow control towards a
// peer that does not read); closing the connection or the handler
// returning ends that Send too. Call it once the session has ended.
func (w *Worker) flushSend(d time.Duration) {
	w.sendMu.Lock()
	start := len(w.queue) > 0 && w.startLocked()
	if !w.sending {
		w.sendMu.Unlock()
		return
	}
	exit := make(chan struct{})
	w.senderExit = exit
	w.sendMu.Unlock()
	if start {
		w.startSender()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-exit:
	case <-t.C:
	}
}

func runJobMsg(req *blacktreev1.JobRequest, ticket string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_RunJob{RunJob: &blacktreev1.RunJob{Job: req, DispatchTicket: ticket}}}
}

func resultAckMsg(jobID string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_ResultAck{ResultAck: &blacktreev1.ResultAck{JobId: jobID}}}
}

func cancelJobMsg(jobID, reason string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_CancelJob{CancelJob: &blacktreev1.CancelJob{
		JobId:  jobID,
		Reason: reason,
	}}}
}

func drainMsg(reason string) *blacktreev1.HubMessage {
	return &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_Drain{Drain: &blacktreev1.Drain{Reason: reason}}}
}
