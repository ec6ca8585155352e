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
	if err := Register(NoopName, func(o Options) (Executor, error) { return Noop{Delay: o.NoopDelay}, nil }); err != nil {
		panic(err) // programming error at init, never at run time
	}
}

// Noop succeeds after Delay without doing anything. It is for load tests
// and smoke checks of the dispatch path.
type Noop struct {
	// Delay is how long each job takes.
	Delay time.Duration
}

// Name implements Executor.
func (Noop) Name() string { return NoopName }

// Run implements Executor.
func (n Noop) Run(ctx context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	start := time.Now()
	resp := &blacktreev1.JobResponse{JobId: req.GetJobId(), StartedAt: timestamppb.New(start)}
	fmt.Fprintf(logs, "noop: job %s, waiting %s\n", req.GetJobId(), n.Delay)
	if n.Delay > 0 {
		t := time.NewTimer(n.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			resp.Error = fmt.Sprintf("cancelled: %v", context.Cause(ctx))
			resp.Logs = "noop: cancelled\n"
			resp.FinishedAt = timestamppb.Now()
			return resp
		}
	}
	resp.Success = true
	resp.ImageUrl = req.GetImageName()
	resp.Logs = fmt.Sprintf("noop: job %s done\n", req.GetJobId())
	resp.FinishedAt = timestamppb.Now()
	return resp
}
