package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// readyPoll is how often WaitHTTP200 asks again; readyAttempt bounds one
// request so that a hung answer does not use up the caller's deadline.
const (
	readyPoll    = 100 * time.Millisecond
	readyAttempt = time.Second
)

// WaitHTTP200 polls url (such as a hub's /readyz) until it answers 200 OK,
// p exits, or ctx ends. The error of a wait that did not succeed carries
// p's output so far. Connections are not kept alive, so nothing lingers
// once it returns.
func WaitHTTP200(ctx context.Context, url string, p *Process) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: readyAttempt}
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", url, err)
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before %s answered 200; output:\n%s", p.Name, p.err, url, p.Output())
		case <-ctx.Done():
			return fmt.Errorf("%s: %s did not answer 200: %w; output:\n%s", p.Name, url, ctx.Err(), p.Output())
		case <-tick.C:
		}
	}
}
