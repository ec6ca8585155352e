package workeragent

import "time"

// When held results are written to the state directory
// (Config.PersistResultsAfter):
//
//   - PersistResultsBeforeSend: completeJob writes the result before it
//     queues the JobResult;
//   - otherwise completeJob only arms a timer (time.AfterFunc) that writes
//     the result if no ResultAck has arrived when it fires; the ack stops
//     it. A result produced with no session writes at once, and so does
//     every unwritten result when a session ends (runSession) and when Run
//     returns (persistUnacked).
//
// Races. Every result-file write and remove holds Agent.filesMu, and the
// writer decides under Agent.mu, before and after its write, whether the
// result is still held (a.results[id] is the same *heldResult):
//
//   - ack before the write starts: the writer finds the result gone and
//     does nothing; the ack saw written=false and did no I/O either;
//   - ack during the write: the ack saw written=false (no I/O); the writer
//     finds the result gone after its write and removes the file, still
//     under filesMu, so a later result of the same job id cannot be
//     written in between and removed by mistake;
//   - ack after the write: the writer set written=true under mu, so the ack
//     removes the file (under filesMu).
//
// a.mu is never held across file I/O.

// persistResult writes h, the held result of job id, to the state
// directory unless it has been acknowledged, is already written, or Run
// has finished. It reports whether it wrote the file.
func (a *Agent) persistResult(id string, h *heldResult) bool {
	if a.state.dir == "" {
		return false
	}
	a.filesMu.Lock()
	defer a.filesMu.Unlock()
	a.mu.Lock()
	todo := a.results[id] == h && !h.written && !a.filesClosed
	a.mu.Unlock()
	if !todo {
		return false
	}
	err := a.state.saveResult(h.res)
	a.mu.Lock()
	acked := a.results[id] != h
	if err == nil && !acked {
		h.written = true
	}
	a.mu.Unlock()
	log := a.log.With("job_id", id)
	switch {
	case err != nil:
		log.Error("result kept in memory only", "error", err)
		return false
	case acked:
		// Acknowledged while it was being written: take it back.
		if err := a.state.removeResult(id); err != nil {
			log.Error("forget acknowledged result", "error", err)
		}
		return false
	}
	log.Debug("unacknowledged result written to the state dir")
	return true
}

// persistUnacked writes every held result not yet on disk and stops their
// timers. why says what prompted it (for the log).
func (a *Agent) persistUnacked(why string) {
	if a.state.dir == "" {
		return
	}
	type pending struct {
		id string
		h  *heldResult
	}
	var todo []pending
	a.mu.Lock()
	for id, h := range a.results {
		if h.written {
			continue
		}
		if h.timer != nil {
			h.timer.Stop()
		}
		todo = append(todo, pending{id, h})
	}
	a.mu.Unlock()
	n := 0
	for _, p := range todo {
		if a.persistResult(p.id, p.h) {
			n++
		}
	}
	if n > 0 {
		a.log.Info("unacknowledged results written to the state dir", "count", n, "reason", why)
	}
}

// armPersistLocked starts h's timer: it writes the result when
// PersistResultsAfter passes without a ResultAck. Callers hold a.mu.
func (a *Agent) armPersistLocked(id string, h *heldResult) {
	h.timer = time.AfterFunc(a.cfg.PersistResultsAfter, func() { a.persistResult(id, h) })
}
