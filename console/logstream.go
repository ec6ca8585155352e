package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

const (
	// maxLogStreams bounds the log streams open at once.
	maxLogStreams = 64
	// logPollEvery is how often a stream looks again for a job that has
	// no output here yet, and how often it sends a keep-alive comment.
	logPollEvery   = time.Second
	keepAliveAfter = 15 * time.Second
)

// jobLog streams a job's output as Server-Sent Events:
//
//	event: chunk    data: the chunk as a JSON string; id: the cursor after it
//	event: skipped  data: how many chunks were dropped before the next
//	event: end      data: {"finished":…,"success":…,"stage":…,"error":…}
//	                or {"gone":true} when this hub keeps nothing of the job
//
// It starts after the cursor in Last-Event-ID (an EventSource's
// reconnect) or ?cursor=, and ends with the job's output here.
func (c *Console) jobLog(w http.ResponseWriter, r *http.Request, _ session) {
	if c.cfg.Logs == nil {
		http.Error(w, "this hub keeps no job output", http.StatusNotFound)
		return
	}
	select {
	case c.streams <- struct{}{}:
		defer func() { <-c.streams }()
	default:
		http.Error(w, "too many open log streams", http.StatusServiceUnavailable)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	id := r.PathValue("id")
	cursor := parseCursor(r)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	poll := time.NewTicker(logPollEvery)
	defer poll.Stop()
	lastWrite := time.Now()
	for {
		var changed <-chan struct{}
		page, ok := c.cfg.Logs.LogSince(id, cursor)
		switch {
		case ok:
			if page.Skipped > 0 {
				fmt.Fprintf(w, "event: skipped\ndata: %d\n\n", page.Skipped)
			}
			for i, chunk := range page.Chunks {
				data, _ := json.Marshal(chunk)
				fmt.Fprintf(w, "event: chunk\nid: %d\ndata: %s\n\n", page.Next-uint64(len(page.Chunks))+uint64(i)+1, data)
			}
			cursor = page.Next
			if page.End != nil {
				end, _ := json.Marshal(map[string]any{
					"finished": page.End.Finished,
					"success":  page.End.Success,
					"stage":    page.End.Stage,
					"error":    page.End.Error,
				})
				fmt.Fprintf(w, "event: end\ndata: %s\n\n", end)
				flusher.Flush()
				return
			}
			if page.Skipped > 0 || len(page.Chunks) > 0 {
				flusher.Flush()
				lastWrite = time.Now()
			}
			changed = page.Changed
		default:
			job, err := c.findJob(r, id)
			if err == nil && job == nil {
				fmt.Fprint(w, "event: end\ndata: {\"gone\":true}\n\n")
				flusher.Flush()
				return
			}
		}
		select {
		case <-changed:
		case <-poll.C:
			if time.Since(lastWrite) >= keepAliveAfter {
				fmt.Fprint(w, ": keep-alive\n\n")
				flusher.Flush()
				lastWrite = time.Now()
			}
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		}
	}
}

// parseCursor reads where a stream starts: Last-Event-ID, else ?cursor=.
func parseCursor(r *http.Request) uint64 {
	s := r.Header.Get("Last-Event-ID")
	if s == "" {
		s = r.URL.Query().Get("cursor")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
