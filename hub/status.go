package hub

import (
	"fmt"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// statusBounds are the field bounds that keep a status under maxBytes
// once encoded: JSON escaping can make six bytes of one (\u00XX), so logs
// get an eighth and error a sixty-fourth (at most 64 KiB), leaving room
// for the other fields.
func statusBounds(maxBytes int) jobspec.Bounds {
	return jobspec.Bounds{
		LogBytes:   maxBytes / 8,
		ErrorBytes: min(maxBytes/64, 64<<10),
	}
}

// encodeStatus bounds resp in place (the hub does not trust the worker's
// bounds: jobspec.BoundResponse) and encodes it. A body still over
// Config.MaxStatusBytes is replaced by tooLargeStatus's. It returns the
// response the body encodes.
func (d *Dispatcher) encodeStatus(resp *blacktreev1.JobResponse) (*blacktreev1.JobResponse, []byte, error) {
	jobspec.BoundResponse(resp, statusBounds(d.cfg.MaxStatusBytes))
	body, err := jobspec.EncodeResponse(resp)
	if err != nil {
		return resp, nil, err
	}
	if len(body) <= d.cfg.MaxStatusBytes {
		return resp, body, nil
	}
	why := fmt.Sprintf("its %d bytes exceed the hub's --max-status-bytes %d", len(body), d.cfg.MaxStatusBytes)
	d.log.Error("status too large; publishing a failed status instead", "job_id", resp.GetJobId(), "bytes", len(body), "max_status_bytes", d.cfg.MaxStatusBytes)
	failed := tooLargeStatus(resp, why)
	body, err = jobspec.EncodeResponse(failed)
	return failed, body, err
}

// tooLargeStatus is the failed status published in place of resp when
// resp could not be published whole (why says what refused it). It keeps
// the job's identity and times and the end of its error, never the image:
// a consumer must not take a job whose result it could not read for a
// success.
func tooLargeStatus(resp *blacktreev1.JobResponse, why string) *blacktreev1.JobResponse {
	msg := fmt.Sprintf("the job's status (success=%v) was not published: %s", resp.GetSuccess(), why)
	if e := resp.GetError(); e != "" {
		msg += "; its error ended: " + jobspec.TruncateMiddle(e, 1024)
	}
	stage := resp.GetFailedStage()
	failed := jobspec.Failed(resp.GetJobId(), stage, fmt.Errorf("%s", msg))
	failed.WorkerId = resp.GetWorkerId()
	failed.StartedAt = resp.GetStartedAt()
	failed.FinishedAt = resp.GetFinishedAt()
	return failed
}
