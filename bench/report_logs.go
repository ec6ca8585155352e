package bench

import (
	"fmt"
	"strings"

	"github.com/blacktree/blacktree/workeragent"
)

func (r *Report) writeLogs(p func(string, ...any), l *LogsResult) {
	c := l.Config
	p("## 5. Log streaming: jobs that print like builds")
	p("")
	p("The real hub and %d real worker processes of %d slots, every slot running a noop job", c.Workers, c.Slots)
	p("that prints %d lines over %s (`--noop-log-lines`), so %.0f lines a second", c.Lines, c.JobLength, float64(c.Workers*c.Slots*c.Lines)/c.JobLength.Seconds())
	p("reach the workers' log streams. CPU is measured over %s after %s of warm-up. The", c.Window, c.Warmup)
	p("workers' `--log-flush-interval` is 0 (every write is sent as a JobLog chunk at once,")
	p("as before the flag) or the default (the first output at once, then what gathered each")
	p("interval), alternating, %d rounds.", c.Rounds)
	p("")
	p("| round | `--log-flush-interval` | hub CPU (of one core) | hub reads+writes/s | workers CPU |")
	p("|---|---|---:|---:|---:|")
	var every, def []float64
	for i, run := range l.Runs {
		iv := run.Interval
		if iv == "default" {
			iv = fmt.Sprintf("default (%s)", workeragent.DefaultLogFlushInterval)
		}
		p("| %d | %s | %.1f%% | %.0f | %.1f%% |", i/len(logsIntervals)+1, iv, 100*run.HubCPU, run.HubSyscallsPerSec, 100*run.WorkersCPU)
		if run.Interval == "default" {
			def = append(def, run.HubCPU)
		} else {
			every = append(every, run.HubCPU)
		}
	}
	p("")
	if len(every) > 0 && len(def) > 0 && median(every) > 0 {
		p("- hub CPU, default / every write at once (medians): %s = **%.2f×**", pct(median(def))+" / "+pct(median(every)), median(def)/median(every))
	}
	p("- worker: `blacktree-worker %s`", strings.Join(l.WorkerArgs, " "))
	p("")
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
