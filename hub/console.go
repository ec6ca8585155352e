package hub

import (
	"context"
	"errors"
	"net/http"

	"github.com/blacktree/blacktree/console"
)

// newConsole builds the operator console (Config.ConsoleAuth): it reads
// and acts through the hub's own AdminService, follows jobs' output in a
// log tap the Dispatcher writes, and counts queues with the autoscaling
// collector's rate-limited counts.
func (h *Hub) newConsole() error {
	h.dispatcher.tap = newLogTap()
	cfg := console.Config{
		Admin: &adminService{h: h},
		Auth:  h.cfg.ConsoleAuth,
		Logs:  h.dispatcher.tap,
		HubID: h.cfg.HubID,
	}
	if h.autoscale.inspector != nil {
		cfg.Queues = h.consoleQueues
	}
	c, err := console.New(cfg, h.log.Named("console"))
	if err != nil {
		return err
	}
	h.console = c
	return nil
}

// errQueuesUncounted: the broker did not answer the last count.
var errQueuesUncounted = errors.New("the broker did not answer")

// consoleQueues is the console's view of the queues: ready counts from
// the broker, and the deliveries this hub holds on the queue it consumes.
func (h *Hub) consoleQueues(context.Context) ([]console.QueueDepth, error) {
	depths := h.autoscale.queueDepths()
	if depths == nil {
		return nil, errQueuesUncounted
	}
	out := make([]console.QueueDepth, 0, len(depths))
	for name, ready := range depths {
		unacked := -1
		if name == h.autoscale.execQueue {
			unacked = h.dispatcher.unackedCount()
		}
		out = append(out, console.QueueDepth{Name: name, Ready: ready, Unacked: unacked})
	}
	return out, nil
}

// mountConsole serves the console under console.Prefix on mux.
func (h *Hub) mountConsole(mux *http.ServeMux) {
	if h.console == nil {
		return
	}
	mux.Handle(console.Prefix, h.console.Handler())
	mux.Handle("GET /ui", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
}
