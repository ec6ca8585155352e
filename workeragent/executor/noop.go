package executor

import (
	"context"
	"fmt"
	"io"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// NoopName is the --executor value of the noop executor.
const NoopName = "noop"

func init() {
	if err := Register(NoopName, func(o Options) (Executor, error) {
		return Noop{
			Delay: o.NoopDelay,
			Lines: o.NoopLines,
		}, nil
	}); err != nil {
		panic(err) // programming error at init, never at run time
	}
}

// Noop succeeds after Delay without doing anything. It is for load tests
// and smoke checks of the dispatch path.
type Noop struct {
	// Delay is how long each job takes.
	Delay time.Duration
	// Lines is how many lines of output each job writes besides its
	// first, spread evenly over Delay, like a build's (a load test of
	// log streaming).
	Lines int
}

// Name implements Executor.
func (Noop) Name() string { return NoopName }

// Run implements Executor.
func (n Noop) Run(ctx context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	start := time.Now()
	resp := &blacktreev1.JobResponse{JobId: req.GetJobId(), StartedAt: timestamppb.New(start)}
	fmt.Fprintf(logs, "noop: job %s, waiting %s\n", req.GetJobId(), n.Delay)
	var w waiter
	defer w.stop()
	for i := 1; i <= n.Lines; i++ {
		// Line i at i/(Lines+1) of the delay.
		if !w.until(ctx, start.Add(time.Duration(float64(n.Delay)*float64(i)/float64(n.Lines+1)))) {
			return cancelled(ctx, resp)
		}
		fmt.Fprintf(logs, "noop: job %s, line %d of %d\n", req.GetJobId(), i, n.Lines)
	}
	if !w.until(ctx, start.Add(n.Delay)) {
		return cancelled(ctx, resp)
	}
	resp.Success = true
	resp.ImageUrl = req.GetImageName()
	resp.Logs = fmt.Sprintf("noop: job %s done\n", req.GetJobId())
	resp.FinishedAt = timestamppb.Now()
	return resp
}

func cancelled(ctx context.Context, resp *blacktreev1.JobResponse) *blacktreev1.JobResponse {
	resp.Error = fmt.Sprintf("cancelled: %v", context.Cause(ctx))
	resp.Logs = "noop: cancelled\n"
	resp.FinishedAt = timestamppb.Now()
	return resp
}

// waiter sleeps until given times on one timer.
type waiter struct{ t *time.Timer }

// until waits for at and reports true, or false if ctx ends first.
func (w *waiter) until(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	if w.t == nil {
		w.t = time.NewTimer(d)
	} else {
		w.t.Reset(d)
	}
	select {
	case <-w.t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *waiter) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}
