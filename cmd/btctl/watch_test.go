package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func protoEqual(a, b proto.Message) bool { return proto.Equal(a, b) }

func TestWatchPeekLeavesMessages(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	r.publishStatus(status, &blacktreev1.JobResponse{JobId: "a-1", Success: true, ImageUrl: "reg/a:1", WorkerId: "w1", Logs: "line one\nline two"})
	r.publishStatus(status, &blacktreev1.JobResponse{
		JobId:       "b-2",
		Success:     false,
		Error:       "clone: auth failed",
		FailedStage: blacktreev1.JobStage_JOB_STAGE_CLONE,
	})
	r.publishStatus(status, &blacktreev1.JobResponse{JobId: "c-3", Success: true, ImageUrl: "reg/c:1"})
	r.waitDepth(status, 3) // publishes are unconfirmed: watch peeks as many as the queue holds
	vars := queueVars(execute, status)

	res := btctl(context.Background(), vars, "watch", "--logs")
	if res.code != exitOK {
		t.Fatalf("watch exit = %d; stderr %q", res.code, res.stderr)
	}
	for _, want := range []string{"a-1 ok image=reg/a:1 worker=w1", "| line two", `b-2 FAILED stage=clone worker=- error="clone: auth failed"`, "c-3 ok"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("watch output lacks %q:\n%s", want, res.stdout)
		}
	}
	r.waitDepth(status, 3)

	res = btctl(context.Background(), vars, "watch", "--json", "--max", "2")
	if res.code != exitOK {
		t.Fatalf("watch --json exit = %d; stderr %q", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("watch --json --max 2 printed %d lines, want 2:\n%s", len(lines), res.stdout)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first["jobId"] != "a-1" {
		t.Errorf("first JSON line = %q (%v), want jobId a-1", lines[0], err)
	}
	r.waitDepth(status, 3)
}

func TestWatchEmptyQueue(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	res := btctl(context.Background(), queueVars(execute, status), "watch")
	if res.code != exitOK || res.stdout != "" || !strings.Contains(res.stderr, "is empty") {
		t.Errorf("watch on empty queue = %d %q %q, want 0, no output, 'is empty'", res.code, res.stdout, res.stderr)
	}
}

func TestWatchConsumeTakes(t *testing.T) {
	r := newRabbit(t)
	execute, status := r.queues()
	for _, id := range []string{"a-1", "b-2", "c-3"} {
		r.publishStatus(status, &blacktreev1.JobResponse{JobId: id, Success: true})
	}
	res := btctl(context.Background(), queueVars(execute, status), "watch", "--consume", "--count", "2", "--json")
	if res.code != exitOK {
		t.Fatalf("watch --consume exit = %d; stderr %q", res.code, res.stderr)
	}
	if got := strings.Count(res.stdout, "\n"); got != 2 {
		t.Errorf("watch --consume --count 2 printed %d lines, want 2", got)
	}
	r.waitDepth(status, 1)
	if d := r.get(status); d.MessageId != "c-3" {
		t.Errorf("left message = %q, want c-3", d.MessageId)
	}
}
