package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRunLogsSmall runs the log-streaming scenario at a small scale: the
// real hub and worker binaries and a real broker. With the default flush
// interval the hub reads far fewer frames than with every write sent.
func TestRunLogsSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := testEnv(ctx, t)
	cfg := LogsConfig{Workers: 1, Slots: 2, Lines: 100, JobLength: 500 * time.Millisecond,
		Window: 1500 * time.Millisecond, Warmup: 500 * time.Millisecond, Rounds: 1}
	res, err := RunLogs(ctx, env, cfg, t.Logf)
	if err != nil {
		t.Fatalf("RunLogs() = %v (is RabbitMQ running? bash scripts/ensure-rabbitmq)", err)
	}
	if len(res.Runs) != 2 || res.Runs[0].Interval != "0" || res.Runs[1].Interval != "default" {
		t.Fatalf("RunLogs() runs = %+v, want one with interval 0, then one with the default", res.Runs)
	}
	// 400 lines a second: about as many frames with every write sent, 20
	// chunks a second with the default 100ms.
	every, def := res.Runs[0].HubSyscallsPerSec, res.Runs[1].HubSyscallsPerSec
	if def <= 0 || def > every/2 {
		t.Errorf("hub reads+writes/s: %.0f with the default interval, %.0f with every write sent; want the first under half the second", def, every)
	}
	var b strings.Builder
	(&Report{Logs: res}).WriteMarkdown(&b)
	for _, want := range []string{"## Log streaming", "| 1 | 0 |", "| 1 | default |", "**median ratio**, default to 0", "--noop-log-lines 100"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteMarkdown() lacks %q; got:\n%s", want, b.String())
		}
	}
}
