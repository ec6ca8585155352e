package cluster

import (
	"context"
	"time"
)

// Poll calls cond every interval until it reports true or ctx ends, for
// state that lives in another process and announces no events (a queue
// depth, an admin answer). It returns ctx's error when cond never held.
func Poll(ctx context.Context, interval time.Duration, cond func() bool) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
