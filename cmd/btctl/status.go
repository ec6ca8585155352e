package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

// waitStatus consumes queue until the status of jobID arrives, acks that
// one message and returns its JobResponse. Every other status stays
// unacked; the caller's close of the channel hands them all back to the
// queue in one go (see usageSubmit for why).
func waitStatus(ctx context.Context, a *amqpConn, queue, jobID string) (*blacktreev1.JobResponse, error) {
	deliveries, err := a.consume(queue, waitHold)
	if err != nil {
		return nil, err
	}
	held := 0
	for {
		select {
		case <-ctx.Done():
			return nil, infraErr("no status for job %s on %q yet (timed out; %d other statuses were looked at and handed back; another consumer of %q, such as the control plane, may have taken it)", jobID, queue, held, queue)
		case d, ok := <-deliveries:
			if !ok {
				return nil, a.closedErr(queue)
			}
			resp, id := decodeStatus(d)
			if id != jobID {
				held++
				if held >= waitHold {
					return nil, infraErr("%q holds more than %d other statuses ahead of job %s; --wait will not churn them: consume them first (btctl watch --consume) or check later", queue, waitHold, jobID)
				}
				continue
			}
			if resp == nil {
				_ = d.Nack(false, true)
				return nil, infraErr("the status message for job %s is not a valid JobResponse (left in %q)", jobID, queue)
			}
			if err := d.Ack(false); err != nil {
				return nil, infraErr("ack the status of job %s: %v", jobID, err)
			}
			return resp, nil
		}
	}
}

// decodeStatus decodes a status body. The job id comes from the body, or
// from message_id when the body is not a JobResponse.
func decodeStatus(d amqp.Delivery) (*blacktreev1.JobResponse, string) {
	resp, err := jobspec.DecodeResponse(d.Body)
	if err != nil {
		return nil, d.MessageId
	}
	if resp.GetJobId() == "" {
		return resp, d.MessageId
	}
	return resp, resp.GetJobId()
}

// printStatus writes one status for a person (or, with asJSON, the body as
// one compact JSON line).
func printStatus(w io.Writer, d amqp.Delivery, asJSON, withLogs bool) {
	if asJSON {
		var buf bytes.Buffer
		if json.Compact(&buf, d.Body) == nil {
			fmt.Fprintln(w, buf.String())
			return
		}
		b, _ := json.Marshal(map[string]string{"undecodable": string(d.Body), "messageId": d.MessageId})
		fmt.Fprintln(w, string(b))
		return
	}
	ts := d.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	resp, id := decodeStatus(d)
	when := ts.UTC().Format(time.RFC3339)
	if resp == nil {
		fmt.Fprintf(w, "%s %s UNDECODABLE %q\n", when, id, truncate(string(d.Body), 200))
		return
	}
	redelivered := ""
	if d.Redelivered {
		redelivered = " (redelivered)"
	}
	if resp.GetSuccess() {
		fmt.Fprintf(w, "%s %s ok image=%s worker=%s%s\n", when, id, resp.GetImageUrl(), orDash(resp.GetWorkerId()), redelivered)
	} else {
		fmt.Fprintf(w, "%s %s FAILED stage=%s worker=%s error=%q%s\n", when, id, jobspec.StageName(resp.GetFailedStage()), orDash(resp.GetWorkerId()), oneLine(resp.GetError()), redelivered)
	}
	if withLogs && resp.GetLogs() != "" {
		for _, line := range strings.Split(strings.TrimRight(resp.GetLogs(), "\n"), "\n") {
			fmt.Fprintf(w, "    | %s\n", line)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func indentJSON(b []byte) string {
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") != nil {
		return string(b)
	}
	return buf.String()
}
