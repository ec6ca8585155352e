package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
)

// ErrIdentityTaken is returned (as PermissionDenied at the RPC edge) when a
// Register names a worker id that belongs to another credential: a live
// session of that id, or running or orphaned jobs of it, were opened with
// a different token or certificate (docs/SECURITY.md#identity).
var ErrIdentityTaken = errors.New("worker id is held by another credential")

// ErrNotOwner is returned when a worker reports on a job it does not hold:
// offered to or running on another session, or never dispatched to it
// (docs/protocol.md#ownership).
var ErrNotOwner = errors.New("job is not held by this worker")

// DeploymentID derives a deployment's identity from what its hubs share:
// the broker's address and virtual host and the two queue names. Hubs
// that consume the same queues have the same id; it is sent to workers in
// Registered and named by every dispatch ticket. It is not a secret.
func DeploymentID(brokerAddr, executeQueue, statusQueue string) string {
	sum := sha256.Sum256([]byte("blacktree deployment\x00" + brokerAddr + "\x00" + executeQueue + "\x00" + statusQueue))
	return "dep-" + hex.EncodeToString(sum[:8])
}

// ticketMACLen is how many bytes of the HMAC a ticket carries.
const ticketMACLen = 16

// ticketer issues and checks dispatch tickets: proof, carried by the
// worker from RunJob back to JobResult or a Register's running jobs, that
// this deployment dispatched a job to one worker id with one credential.
// Every hub of a deployment must have the same key
// (Config.DispatchKey), so that a result moves between them and survives
// a hub restart.
type ticketer struct {
	deployment string
	key        []byte
}

// issue returns the ticket for jobID dispatched to workerID with cred.
func (t ticketer) issue(workerID, cred, jobID string) string {
	return t.deployment + "." + base64.RawURLEncoding.EncodeToString(t.mac(workerID, cred, jobID))
}

func (t ticketer) mac(workerID, cred, jobID string) []byte {
	m := hmac.New(sha256.New, t.key)
	// Length-prefixed, so that no two field splits give the same input.
	for _, s := range []string{t.deployment, workerID, cred, jobID} {
		fmt.Fprintf(m, "%d:%s", len(s), s)
	}
	return m.Sum(nil)[:ticketMACLen]
}

// ticketVerdict is what check makes of a ticket.
type ticketVerdict int

const (
	ticketValid       ticketVerdict = iota
	ticketMissing                   // no ticket: the worker predates them, or forges
	ticketOtherDeploy               // well formed, for another deployment
	ticketInvalid                   // wrong MAC: not dispatched to this worker and credential
)

// check judges ticket for jobID from workerID with cred.
func (t ticketer) check(ticket, workerID, cred, jobID string) ticketVerdict {
	if ticket == "" {
		return ticketMissing
	}
	dep, mac64, ok := strings.Cut(ticket, ".")
	if !ok {
		return ticketInvalid
	}
	if dep != t.deployment {
		return ticketOtherDeploy
	}
	mac, err := base64.RawURLEncoding.DecodeString(mac64)
	if err != nil || !hmac.Equal(mac, t.mac(workerID, cred, jobID)) {
		return ticketInvalid
	}
	return ticketValid
}

func (v ticketVerdict) String() string {
	switch v {
	case ticketValid:
		return "valid"
	case ticketMissing:
		return "no dispatch ticket"
	case ticketOtherDeploy:
		return "ticket of another deployment"
	}
	return "invalid dispatch ticket"
}

// claimIdentity checks that w's worker id is free for w's credential: no
// live session of that id, and no running or orphaned job of it, belongs
// to another credential. A reconnect with the same credential replaces
// the old session as before.
func (h *Hub) claimIdentity(w *Worker) error {
	cred, live, ok := h.manager.owner(w.id)
	if !ok || cred == w.cred {
		return nil
	}
	if live {
		return fmt.Errorf("%w: a live session", ErrIdentityTaken)
	}
	if h.dispatcher.holdsJobsOf(w.id) {
		return fmt.Errorf("%w: its running or orphaned jobs", ErrIdentityTaken)
	}
	return nil
}

// idLock returns the lock that serialises registrations of worker id.
func (h *Hub) idLock(id string) *sync.Mutex {
	f := fnv.New32a()
	_, _ = f.Write([]byte(id))
	return &h.idLocks[f.Sum32()%uint32(len(h.idLocks))]
}

// holdsJobsOf reports whether a job runs on, or is orphaned by, workerID.
func (d *Dispatcher) holdsJobsOf(workerID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, j := range d.jobs {
		if j.lastWorkerID == workerID && (j.state == jobRunning || j.state == jobOrphaned) {
			return true
		}
	}
	return false
}

// owner returns the credential of id's latest session, and whether that
// session is live; ok is false when the hub has no entry for id.
func (m *WorkerManager) owner(id string) (cred string, live, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.workers[id]
	if e == nil {
		return "", false, false
	}
	return e.w.cred, !e.dead, true
}
