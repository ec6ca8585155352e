package executor

import (
	"context"
	"errors"

	"github.com/blacktree/blacktree/internal/jobspec"
)

// ErrCancelled is the cause (errors.Is) of a job's context when the
// control plane cancelled the job (the hub's CancelJob).
var ErrCancelled = errors.New("cancelled by the control plane")

// CancelError is the cause the agent cancels a job's context with: it
// matches ErrCancelled and carries the cancel's reason.
type CancelError struct {
	// Reason is the cancel's reason, possibly empty.
	Reason string
}

func (e *CancelError) Error() string        { return jobspec.CancelledError(e.Reason) }
func (e *CancelError) Is(target error) bool { return target == ErrCancelled }

// Cancelled reports whether ctx ended because the job was cancelled, and
// the cancel's reason.
func Cancelled(ctx context.Context) (reason string, ok bool) {
	var ce *CancelError
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &ce) {
		return ce.Reason, true
	}
	return "", false
}

// ShieldFromCancel returns a context for work that must not be cut short
// by a cancel once started, such as a push (a push cut short could leave
// a tag behind a cancelled status). It ends when ctx ends for any other
// cause (a timeout, the worker stopping) and at ctx's deadline, but not
// when ctx is cancelled with ErrCancelled. The returned stop releases it.
func ShieldFromCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	shielded, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	var stopDeadline context.CancelFunc = func() {}
	if deadline, ok := ctx.Deadline(); ok {
		var withDeadline context.Context
		withDeadline, stopDeadline = context.WithDeadline(shielded, deadline)
		shielded = withDeadline
	}
	stopAfter := context.AfterFunc(ctx, func() {
		if cause := context.Cause(ctx); !errors.Is(cause, ErrCancelled) {
			cancel(cause)
		}
	})
	return shielded, func() {
		stopAfter()
		stopDeadline()
		cancel(nil)
	}
}
