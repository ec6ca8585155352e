package executor

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRegistry(t *testing.T) {
	if _, err := New("no-such-executor", Options{}); err == nil || !strings.Contains(err.Error(), "known:") {
		t.Errorf("New(unknown) = %v, want an error listing the known executors", err)
	}
	if err := Register(NoopName, nil); err == nil {
		t.Errorf("Register(%q) twice = nil, want an error", NoopName)
	}
	e, err := New(NoopName, Options{NoopDelay: time.Millisecond})
	if err != nil || e.Name() != NoopName {
		t.Fatalf("New(noop) = %v, %v; want the noop executor", e, err)
	}
}

func TestNoop(t *testing.T) {
	req := &blacktreev1.JobRequest{JobId: "j1", ImageName: "app:1"}
	tests := []struct {
		name    string
		delay   time.Duration
		lines   int
		cancel  bool
		wantOK  bool
		wantErr string
	}{
		{name: "succeeds", delay: time.Millisecond, wantOK: true},
		{name: "no delay", wantOK: true},
		{name: "cancelled", delay: time.Hour, cancel: true, wantErr: "cancelled"},
		{name: "lines", delay: 30 * time.Millisecond, lines: 3, wantOK: true},
		{name: "lines without delay", lines: 2, wantOK: true},
		{name: "cancelled between lines", delay: time.Hour, lines: 2, cancel: true, wantErr: "cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			var logs bytes.Buffer
			start := time.Now()
			resp := Noop{Delay: tt.delay, Lines: tt.lines}.Run(ctx, req, &logs)
			if took := time.Since(start); tt.wantOK && took < tt.delay {
				t.Errorf("Run() took %s, want at least the delay %s", took, tt.delay)
			}
			if resp.GetJobId() != "j1" || resp.GetSuccess() != tt.wantOK || !strings.Contains(resp.GetError(), tt.wantErr) {
				t.Errorf("Run() = %v, want success=%v error containing %q", resp, tt.wantOK, tt.wantErr)
			}
			if tt.wantOK && resp.GetImageUrl() != "app:1" {
				t.Errorf("Run().ImageUrl = %q, want app:1", resp.GetImageUrl())
			}
			if !strings.Contains(logs.String(), "j1") {
				t.Errorf("Run() logs = %q, want a line naming the job", logs.String())
			}
			want := 1 + tt.lines // the first line, then Lines more
			if tt.cancel {
				want = 1
			}
			if got := strings.Count(logs.String(), "\n"); got != want {
				t.Errorf("Run() wrote %d lines (%q), want %d", got, logs.String(), want)
			}
			if tt.lines > 0 && !tt.cancel && !strings.HasSuffix(logs.String(), fmt.Sprintf("line %d of %d\n", tt.lines, tt.lines)) {
				t.Errorf("Run() logs = %q, want the last line numbered %d of %d", logs.String(), tt.lines, tt.lines)
			}
		})
	}
}
