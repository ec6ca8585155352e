package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// LogsConfig configures the log-streaming scenario: real noop workers whose
// jobs print like builds (blacktree-worker --noop-log-lines), with the
// worker agent's --log-flush-interval at 0 (every write is sent at once)
// and at its default, alternating.
type LogsConfig struct {
	// Workers noop worker processes with Slots slots each, every slot busy.
	Workers, Slots int
	// Lines is how many lines each job prints over JobLength.
	Lines     int
	JobLength time.Duration
	// Window is how long CPU is measured, after Warmup.
	Window, Warmup time.Duration
	// Rounds is how many pairs (every write, default interval) run.
	Rounds int
}

// DefaultLogsConfig is what `make bench` runs: the dispatch comparison's
// workers and slots, jobs of a second that print 200 lines each.
func DefaultLogsConfig() LogsConfig {
	d := DefaultDispatchConfig()
	return LogsConfig{
		Workers:   d.Workers,
		Slots:     d.Slots,
		Lines:     200,
		JobLength: time.Second,
		Window:    8 * time.Second,
		Warmup:    2 * time.Second,
		Rounds:    2,
	}
}

// LogsRun is one measurement with one --log-flush-interval.
type LogsRun struct {
	Interval string // the workers' --log-flush-interval
	// HubCPU and WorkersCPU are fractions of one core over the window.
	HubCPU, WorkersCPU float64
	// HubSyscallsPerSec are the hub's reads and writes per second.
	HubSyscallsPerSec float64
}

// LogsResult is what the log-streaming scenario measured.
type LogsResult struct {
	Config     LogsConfig
	Runs       []LogsRun
	WorkerArgs []string // one worker's command line
}

// logsIntervals are the two settings compared: every write at once (0)
// and the default.
var logsIntervals = []string{"0", "default"}

// RunLogs measures the hub's and workers' CPU while every slot runs a job
// that prints cfg.Lines lines over cfg.JobLength, cfg.Rounds times with
// each of logsIntervals, alternating.
func RunLogs(ctx context.Context, env *Env, cfg LogsConfig, logf func(string, ...any)) (*LogsResult, error) {
	res := &LogsResult{Config: cfg}
	for r := range cfg.Rounds {
		for _, iv := range logsIntervals {
			run, args, err := logsRun(ctx, env, cfg, iv, fmt.Sprintf("logs-%d", r))
			if err != nil {
				return res, fmt.Errorf("--log-flush-interval %s: %w", iv, err)
			}
			res.WorkerArgs = args
			logf("logs: --log-flush-interval %s: hub %.1f%%, workers %.1f%% of a core", iv, 100*run.HubCPU, 100*run.WorkersCPU)
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

func logsRun(ctx context.Context, env *Env, cfg LogsConfig, interval, prefix string) (LogsRun, []string, error) {
	run := LogsRun{Interval: interval}
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return run, nil, err
	}
	defer func() { _ = q.Delete(env.AMQPURL) }()
	// Enough jobs to keep every slot busy through warm-up and window.
	slots := cfg.Workers * cfg.Slots
	jobs := slots * (int((cfg.Warmup+cfg.Window)/cfg.JobLength) + 2)
	pub, err := NewPublisher(env.AMQPURL, q.Execute, NewLedger(), 256)
	if err != nil {
		return run, nil, err
	}
	_, err = pub.PublishBacklog(ctx, prefix, jobs)
	_ = pub.Close()
	if err != nil {
		return run, nil, err
	}
	hub, err := env.StartHub(ctx, q)
	if err != nil {
		return run, nil, err
	}
	defer func() { _ = hub.Stop(20 * time.Second) }()
	var args []string
	var workers []*cluster.Process
	defer func() {
		for _, w := range workers {
			_ = w.Stop(20 * time.Second)
		}
	}()
	extra := []string{"--noop-log-lines", fmt.Sprint(cfg.Lines)}
	if interval != "default" {
		extra = append(extra, "--log-flush-interval", interval)
	}
	args = env.Shown(append(env.WorkerArgs("<name>", "<grpc>", cfg.Slots, cfg.JobLength), extra...))
	for i := range cfg.Workers {
		wargs := append(env.WorkerArgs(fmt.Sprintf("%s-w%d", prefix, i), hub.GRPCAddr, cfg.Slots, cfg.JobLength), extra...)
		w, err := env.start("worker", env.Bins.Worker, wargs, env.WorkerEnv)
		if err != nil {
			return run, nil, err
		}
		workers = append(workers, w)
	}
	t := time.NewTimer(cfg.Warmup)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return run, nil, ctx.Err()
	}
	pids := []int{hub.Pid()}
	for _, w := range workers {
		pids = append(pids, w.Pid())
	}
	m := StartCPUMeter(pids...)
	t.Reset(cfg.Window)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return run, nil, ctx.Err()
	}
	u := m.Stop()
	run.HubCPU = u.Procs[hub.Pid()]
	run.HubSyscallsPerSec = float64(u.Syscalls[hub.Pid()]) / u.Wall.Seconds()
	for _, w := range workers {
		run.WorkersCPU += u.Procs[w.Pid()]
	}
	return run, args, nil
}
