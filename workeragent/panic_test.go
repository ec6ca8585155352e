package workeragent

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// panicExec writes the job's token to its output, then panics with a value
// that quotes the token.
type panicExec struct{}

func (panicExec) Name() string { return "panicky" }

func (panicExec) Run(_ context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	fmt.Fprintf(logs, "about to fail with token %s\n", req.GetGithubToken())
	panic(fmt.Sprintf("executor bug while using token %s", req.GetGithubToken()))
}

// TestExecutorPanicFailsJob: a panicking Executor.Run becomes a failed
// result, the agent keeps serving, and the token quoted by the panic and
// the output reaches neither the agent's log, the JobLog frames nor the
// result.
func TestExecutorPanicFailsJob(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	r := startAgent(t, Config{HubAddrs: []string{hub.Addr}}, panicExec{})
	s := hub.NextStream(t, wait)
	var frames strings.Builder
	for _, id := range []string{"panic-1", "panic-2"} {
		s.Send(t, fakehub.RunJob(jobReq(id)))
		res := s.WaitFor(t, wait, "JobResult", func(m *blacktreev1.WorkerMessage) bool {
			if l := m.GetJobLog(); l != nil {
				frames.WriteString(l.GetData())
			}
			return fakehub.IsResult(id)(m)
		}).GetJobResult().GetResponse()
		// Exactly this: not "cancelled: ..." (the job was not cancelled).
		if want := "executor panicky failed unexpectedly"; res.GetSuccess() || res.GetError() != want {
			t.Errorf("result of %s = %v, want a failure with error %q", id, res, want)
		}
		if strings.Contains(res.String(), testToken) {
			t.Errorf("result of %s carries the token: %v", id, res)
		}
		s.Send(t, fakehub.Ack(id))
	}
	if !strings.Contains(r.logs.String(), "executor panicked") {
		t.Errorf("agent log lacks the panic:\n%s", r.logs.String())
	}
	if !strings.Contains(frames.String(), "about to fail with token [REDACTED]") {
		t.Errorf("JobLog frames = %q, want the output before the panic, scrubbed", frames.String())
	}
	for what, text := range map[string]string{"agent log": r.logs.String(), "JobLog frames": frames.String()} {
		if strings.Contains(text, testToken) {
			t.Errorf("%s carries the token:\n%s", what, text)
		}
	}
}
