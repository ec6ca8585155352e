package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestBadInput: every kind of hostile or broken message gets its documented
// outcome — a failed status naming the problem when a jobId is readable,
// dead-lettering otherwise — and the hub stays ready and keeps working.
func TestBadInput(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	e.startWorker("bad-input", []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "1s", "--slots", "4")
	e.waitWorkers(h, 1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	big := `{"jobId":"bad-huge","repoUrl":"user/reponame","imageName":"a","padding":"` + strings.Repeat("x", 10<<20) + `"}`
	tests := []struct {
		name       string
		id         string // "" when no jobId is readable: dead-lettered
		body       string
		wantOK     bool
		wantErrHas string
	}{
		{
			name: "malformed JSON",
			body: `{"jobId":"bad-malformed",`,
		},
		{
			name: "not UTF-8",
			body: "{\"jobId\":\"bad-utf8\",\"repoUrl\":\"\xff\xfe\"}",
		},
		{
			name: "not an object",
			body: `["bad-array"]`,
		},
		{
			name:       "missing fields",
			id:         "bad-missing",
			body:       `{"jobId":"bad-missing"}`,
			wantErrHas: "repoUrl",
		},
		{
			name:       "10 MiB message",
			id:         "bad-huge",
			body:       big,
			wantErrHas: "limit",
		},
		{
			name:   "unknown fields tolerated",
			id:     "ok-unknown",
			body:   `{"jobId":"ok-unknown","repoUrl":"user/reponame","imageName":"myapp:latest","priority":7}`,
			wantOK: true,
		},
		{
			name:       "dockerfile traversal",
			id:         "bad-traversal",
			body:       `{"jobId":"bad-traversal","repoUrl":"user/reponame","imageName":"a","dockerfilePath":"../../etc/passwd"}`,
			wantErrHas: "dockerfilePath",
		},
		{
			name:       "context traversal",
			id:         "bad-context",
			body:       `{"jobId":"bad-context","repoUrl":"user/reponame","imageName":"a","contextDir":"/etc"}`,
			wantErrHas: "contextDir",
		},
		{
			name:       "other host",
			id:         "bad-host",
			body:       `{"jobId":"bad-host","repoUrl":"https://evil.example.org/a/b","imageName":"a"}`,
			wantErrHas: "not in the allowed",
		},
		{
			name:       "file URL",
			id:         "bad-file",
			body:       `{"jobId":"bad-file","repoUrl":"file:///etc/passwd","imageName":"a"}`,
			wantErrHas: "scheme",
		},
		{
			name:       "credentials in URL",
			id:         "bad-creds",
			body:       `{"jobId":"bad-creds","repoUrl":"https://u:p@github.com/a/b","imageName":"a"}`,
			wantErrHas: "credentials",
		},
		{
			name:       "metadata address",
			id:         "bad-metadata",
			body:       `{"jobId":"bad-metadata","repoUrl":"https://169.254.169.254/a/b","imageName":"a"}`,
			wantErrHas: "metadata",
		},
		{
			name:       "invalid image name",
			id:         "bad-image",
			body:       `{"jobId":"bad-image","repoUrl":"user/reponame","imageName":"My App"}`,
			wantErrHas: "imageName",
		},
	}
	dead0, _ := e.cp.QueueDepth(e.execQ + ".dead")
	deadLettered := 0
	var answered []string
	for _, tt := range tests {
		if err := e.cp.PublishRaw(ctx, []byte(tt.body), tt.id); err != nil {
			t.Fatalf("%s: PublishRaw() = %v", tt.name, err)
		}
		if tt.id == "" {
			deadLettered++
		} else {
			answered = append(answered, tt.id)
		}
	}
	// Duplicate jobIds: the same job twice while the first is in flight.
	e.publish(ctx, "dup-1", "dup-1")
	got, err := e.cp.WaitFor(ctx, append(answered, "dup-1")...)
	if err != nil {
		t.Fatalf("WaitFor() = %v", err)
	}
	for _, tt := range tests {
		if tt.id == "" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			r := got[tt.id]
			if r.GetSuccess() != tt.wantOK {
				t.Fatalf("status %s = %v, want success=%v", tt.id, r, tt.wantOK)
			}
			if !tt.wantOK && !strings.Contains(r.GetError(), tt.wantErrHas) {
				t.Errorf("status %s error = %q, want it to mention %q", tt.id, r.GetError(), tt.wantErrHas)
			}
		})
	}
	// Messages with no readable jobId are dead-lettered, not requeued.
	deadline := time.Now().Add(30 * time.Second)
	var dead int
	for {
		dead, err = e.cp.QueueDepth(e.execQ + ".dead")
		if err == nil && dead-dead0 >= deadLettered || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	if dead-dead0 != deadLettered {
		t.Errorf("dead-letter queue depth grew by %d (err %v), want %d", dead-dead0, err, deadLettered)
	}
	if !ready(h) {
		t.Fatalf("hub not ready after bad input")
	}
	e.publish(ctx, "after-bad-input")
	if r, err := e.cp.WaitFor(ctx, "after-bad-input"); err != nil || !r["after-bad-input"].GetSuccess() {
		t.Errorf("valid job after bad input = %v, %v; want success", r, err)
	}
	dups := len(e.cp.Statuses("dup-1"))
	record(t, "%d bad messages: %d failed statuses, %d dead-lettered; duplicate jobId -> %d status(es); hub ready",
		len(tests), len(answered), dead-dead0, dups)
}
