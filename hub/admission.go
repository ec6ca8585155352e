package hub

import (
	"context"
	"fmt"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/protover"
)

// Bounds on the Register fields validateRegister does not bound itself
// (docs/SECURITY.md#limits). The cache summary is trimmed, not refused
// (cachesummary.go); everything else over a bound refuses the Register
// with InvalidArgument. The whole frame is also bounded by
// Config.MaxRecvMsgSize.
const (
	maxNameLen        = 256  // bytes of Register.name
	maxVersionLen     = 64   // bytes of Register.version
	maxLabelKeyLen    = 128  // bytes of one label key
	maxLabelValueLen  = 256  // bytes of one label value
	maxRunningJobs    = 4096 // entries of Register.running_jobs (maxSlots)
	maxUnackedResults = 4096 // entries of Register.unacked_results
)

// validateRegisterSizes checks the sizes and counts of reg's free-form
// fields; the error is for the worker.
func validateRegisterSizes(reg *blacktreev1.Register) error {
	switch {
	case len(reg.GetName()) > maxNameLen || !utf8.ValidString(reg.GetName()):
		return fmt.Errorf("name must be at most %d bytes of UTF-8", maxNameLen)
	case len(reg.GetVersion()) > maxVersionLen || !utf8.ValidString(reg.GetVersion()):
		return fmt.Errorf("version must be at most %d bytes of UTF-8", maxVersionLen)
	case len(reg.GetRunningJobs()) > maxRunningJobs:
		return fmt.Errorf("at most %d running_jobs", maxRunningJobs)
	case len(reg.GetUnackedResults()) > maxUnackedResults:
		return fmt.Errorf("at most %d unacked_results", maxUnackedResults)
	}
	if err := protover.ValidFeatures(reg.GetFeatures()); err != nil {
		return err
	}
	for k, v := range reg.GetLabels() {
		if k == "" || len(k) > maxLabelKeyLen || len(v) > maxLabelValueLen {
			return fmt.Errorf("label keys must be 1 to %d bytes and values at most %d bytes", maxLabelKeyLen, maxLabelValueLen)
		}
	}
	for _, j := range reg.GetRunningJobs() {
		if id := j.GetJobId(); id == "" || len(id) > jobspec.MaxJobIDLen {
			return fmt.Errorf("a running job's job_id must be 1 to %d bytes", jobspec.MaxJobIDLen)
		}
	}
	return nil
}

// admit decides whether a validated Register may open a session: its
// worker id is not denied (DenyWorker), and its credential holds fewer
// than Config.MaxSessionsPerCredential other worker ids. On success the
// caller must call release when the session's handler returns.
func (h *Hub) admit(ctx context.Context, reg *blacktreev1.Register) (release func(), err error) {
	id := reg.GetWorkerId()
	if reason, denied := h.manager.denied(id); denied {
		h.metrics.registerRefused(refusedDenied)
		h.log.Warn("register refused: worker is denied", "worker_id", id, "reason", reason)
		return nil, status.Errorf(codes.PermissionDenied, "worker %q is denied by an operator (%s)", id, reason)
	}
	key := ""
	if h.cfg.SessionKey != nil {
		key = h.cfg.SessionKey(ctx)
	}
	if key == "" {
		return func() {}, nil
	}
	release, ok := h.sessions.acquire(key, id)
	if !ok {
		h.metrics.registerRefused(refusedSessionLimit)
		h.log.Warn("register refused: the credential's session limit is reached", "worker_id", id,
			"limit", h.cfg.MaxSessionsPerCredential)
		return nil, status.Errorf(codes.ResourceExhausted,
			"this credential already holds %d worker sessions, the hub's limit (--max-sessions-per-token)", h.cfg.MaxSessionsPerCredential)
	}
	return release, nil
}

// sessionCounter counts the worker ids that hold a session under each
// credential. A session that replaces one of the same worker id (a
// reconnect) takes no new place, so a worker whose old connection has not
// closed yet can always come back.
type sessionCounter struct {
	max int

	mu    sync.Mutex                // guards byKey
	byKey map[string]map[string]int // credential key -> worker id -> open sessions
}

func newSessionCounter(max int) *sessionCounter {
	return &sessionCounter{max: max, byKey: map[string]map[string]int{}}
}

// acquire counts one more session of worker id under key, unless key
// already has max other worker ids. release uncounts it (idempotent).
func (c *sessionCounter) acquire(key, id string) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := c.byKey[key]
	if ids[id] == 0 && len(ids) >= c.max {
		return nil, false
	}
	if ids == nil {
		ids = map[string]int{}
		c.byKey[key] = ids
	}
	ids[id]++
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if ids[id]--; ids[id] == 0 {
			delete(ids, id)
		}
		if len(ids) == 0 {
			delete(c.byKey, key)
		}
	}), true
}
