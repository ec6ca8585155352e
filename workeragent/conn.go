package workeragent

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/blacktree/blacktree/internal/backoff"
)

// connectLoop runs sessions one after another until ctx ends or the agent
// is stopping. After a session that never registered it waits a jittered,
// exponentially growing delay; after one that did, it starts over from the
// minimum. Each attempt moves on to the next hub address, so a worker
// fails over between hub replicas.
func (a *Agent) connectLoop(ctx context.Context) {
	retry := backoff.New(a.cfg.BackoffMin, a.cfg.BackoffMax)
	next := 0
	for {
		addr := a.cfg.HubAddrs[next%len(a.cfg.HubAddrs)]
		registered, err := a.runSession(ctx, addr)
		select {
		case <-ctx.Done():
			return
		case <-a.stopping:
			return
		default:
		}
		if registered {
			retry.Reset()
		}
		next++
		d := retry.Next()
		if errors.Is(err, ErrProtocolRefused) {
			// Retrying sooner cannot help: wait the longest delay (an
			// upgrade of the hub or the worker is due).
			d = a.cfg.BackoffMax
			a.log.Error("hub refused this worker's protocol version; retrying at the longest backoff", "hub", addr, "error", err, "retry_in", d)
		} else {
			a.log.Warn("hub session ended; reconnecting", "hub", addr, "error", err, "retry_in", d.Round(time.Millisecond))
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.stopping:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// dial builds a client connection to one hub. A fresh connection per
// session keeps ownership simple (closing it ends every goroutine it
// started) and makes reconnects independent of grpc's own backoff state.
func (a *Agent) dial(addr string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if a.cfg.TLS != nil {
		creds = credentials.NewTLS(a.cfg.TLS)
	}
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                a.cfg.KeepaliveTime,
			Timeout:             a.cfg.KeepaliveTimeout,
			PermitWithoutStream: a.cfg.KeepalivePermitWithoutStream,
		}),
		// Fixed windows turn off grpc-go's BDP pings, which would follow
		// every heartbeat (the hub does the same; see hub/grpcserver.go).
		grpc.WithInitialWindowSize(1<<20),
		grpc.WithInitialConnWindowSize(1<<20),
		grpc.WithUserAgent("blacktree-worker/"+a.cfg.Version),
	)
}

// errHubClosed is returned when the hub ended the stream cleanly.
var errHubClosed = errors.New("hub closed the stream")
