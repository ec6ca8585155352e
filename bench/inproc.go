package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/blacktree/blacktree/hub"
	"github.com/blacktree/blacktree/internal/rabbit"
	"github.com/blacktree/blacktree/workeragent"
	"github.com/blacktree/blacktree/workeragent/executor"
)

// The in-process profiles run a hub inside this process (package hub on
// internal/rabbit, the same parts the binary wires; no auth interceptors,
// logs discarded at the binary's default level) together with in-process
// workers. Every goroutine the hub starts carries the pprof label
// side=hub, the workers' side=worker, so one profile shows both and
// `pprof -tagfocus` separates them from each other and from the load
// generator and fleet living in the same process. (The binary's own
// profiles, via --pprof, are taken by captureCPU/captureHeap.)

// InprocHub is a hub running in this process.
type InprocHub struct {
	Hub    *hub.Hub
	client *rabbit.Client
	cancel context.CancelFunc
	done   chan error
}

// StartInprocHub starts a hub on q with the given prefetch.
func StartInprocHub(ctx context.Context, url string, q Queues, prefetch int) (*InprocHub, error) {
	log := hclog.New(&hclog.LoggerOptions{Name: "hub", Output: io.Discard, Level: hclog.Info})
	client, err := rabbit.New(rabbit.Config{URL: url, ExecuteQueue: q.Execute, StatusQueue: q.Status,
		Prefetch: prefetch, ConnectionName: "btbench-inproc-hub"}, log)
	if err != nil {
		return nil, err
	}
	h, err := hub.New(hub.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, client, log)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	ih := &InprocHub{Hub: h, client: client, cancel: cancel, done: make(chan error, 2)}
	var startErr error
	pprof.Do(rctx, pprof.Labels("side", "hub"), func(lctx context.Context) {
		if startErr = client.Connect(ctx); startErr != nil {
			return
		}
		go func() { ih.done <- client.Run(lctx) }()
		go func() { ih.done <- h.Run(lctx) }()
	})
	if startErr != nil {
		cancel()
		return nil, startErr
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !h.Ready() {
		select {
		case <-deadline.C:
			ih.Stop()
			return nil, fmt.Errorf("in-process hub not ready after 30s")
		case err := <-ih.done:
			ih.done <- err
			ih.Stop()
			return nil, fmt.Errorf("in-process hub stopped: %w", err)
		case <-tick.C:
		}
	}
	return ih, nil
}

// Addr is the hub's gRPC address.
func (ih *InprocHub) Addr() string { return ih.Hub.GRPCAddr().String() }

// Stop shuts the hub and its broker client down.
func (ih *InprocHub) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = ih.Hub.Shutdown(ctx)
	_ = ih.client.Shutdown(ctx)
	ih.cancel()
	for range 2 {
		select {
		case <-ih.done:
		case <-ctx.Done():
			return
		}
	}
}

// startInprocWorkers runs n worker agents (noop executor, no delay) in
// this process, labelled side=worker, each with its own state directory
// as the binary has. stop shuts them down.
// An empty dir means ephemeral workers (no state directory).
func startInprocWorkers(addr, dir string, n, slots int) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	var agents []*workeragent.Agent
	done := make(chan error, n)
	log := hclog.New(&hclog.LoggerOptions{Name: "worker", Output: io.Discard, Level: hclog.Info})
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		for _, a := range agents {
			_ = a.Shutdown(sctx)
		}
		cancel()
		for range agents {
			select {
			case <-done:
			case <-sctx.Done():
				return
			}
		}
	}
	for i := range n {
		a, err := workeragent.New(workeragent.Config{HubAddrs: []string{addr}, Insecure: true,
			Name: fmt.Sprintf("prof-w%d", i), Slots: slots, StateDir: stateDir(dir, i)},
			executor.Noop{}, log)
		if err != nil {
			stop()
			return nil, err
		}
		agents = append(agents, a)
		pprof.Do(ctx, pprof.Labels("side", "worker"), func(lctx context.Context) {
			go func() { done <- a.Run(lctx) }()
		})
	}
	return stop, nil
}

// ProfileDrain is one profiled backlog drain.
type ProfileDrain struct {
	Stateful   bool // workers had a state directory
	Throughput float64
	Tags       string // pprof -tags: each side's share of the samples
	HubCPU     string // top -cum, tagfocus side=hub
	WorkerCPU  string // top -cum, tagfocus side=worker
	Path       string
}

// profileDrain drains a backlog through the in-process hub and
// dcfg.Workers in-process workers under the CPU profiler.
func profileDrain(ctx context.Context, env *Env, ih *InprocHub, q Queues, dcfg DispatchConfig, stateful bool, self string, logf func(string, ...any)) (*ProfileDrain, error) {
	name := "ephemeral"
	if stateful {
		name = "stateful"
	}
	ledger := NewLedger()
	pub, err := NewPublisher(env.AMQPURL, q.Execute, ledger, 512)
	if err != nil {
		return nil, err
	}
	_, err = pub.PublishBacklog(ctx, "prof-"+name, dcfg.Jobs)
	if cerr := pub.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	coll, err := NewCollector(env.AMQPURL, q.Status, ledger)
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	dir := ""
	if stateful {
		dir = filepath.Join(env.Dir, "prof-"+name)
	}
	logf("profile: in-process hub draining %d jobs with %d in-process %s workers", dcfg.Jobs, dcfg.Workers, name)
	stopWorkers, err := startInprocWorkers(ih.Addr(), dir, dcfg.Workers, dcfg.Slots)
	if err != nil {
		return nil, err
	}
	defer stopWorkers()
	d := &ProfileDrain{Stateful: stateful, Path: filepath.Join(dcfg.ProfileDir, "inproc-dispatch-"+name+".cpu.pprof")}
	err = writeCPUProfile(ctx, d.Path, 0, func(ctx context.Context) error {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		return ledger.WaitAnswered(wctx, dcfg.Jobs)
	})
	if err != nil {
		return nil, err
	}
	d.Throughput = Rate(ledger.StatusTimes(), dcfg.Skip)
	d.Tags = PprofTags(ctx, d.Path)
	d.HubCPU = PprofTop(ctx, self, d.Path, "-cum", "-tagfocus=side=hub")
	d.WorkerCPU = PprofTop(ctx, self, d.Path, "-cum", "-tagfocus=side=worker")
	logf("profile: %s: %.0f jobs/s", name, d.Throughput)
	return d, nil
}

// ProfileResult holds the in-process profiles.
type ProfileResult struct {
	Dir             string
	Drains          []ProfileDrain
	FleetN          int
	FleetCPU        string // top, tagfocus side=hub, idle fleet
	FleetGoroutines string // goroutine profile top, tagfocus side=hub
	// FleetDispatchCPU is the hub's CPU (top -cum) while dispatching with
	// the fleet connected, at FleetDispatchThroughput.
	FleetDispatchCPU        string
	FleetDispatchThroughput float64
	FleetHeap               string // top inuse_space, hub-side frames
}

func writeCPUProfile(ctx context.Context, path string, d time.Duration, wait func(context.Context) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	if wait != nil {
		return wait(ctx)
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// hubFrames focuses heap profiles on allocations made on the hub's side
// of the wire (the fleet's client transports are http2Client).
const hubFrames = `blacktree/hub|http2Server|NewServerTransport|serverHandlerTransport|grpc\.\(\*Server\)`

// RunProfile profiles an in-process hub: CPU while it drains a backlog
// served by real worker processes, then CPU and heap with fleetN idle
// in-process workers connected.
func RunProfile(ctx context.Context, env *Env, dcfg DispatchConfig, fleetN, fleetJobs int, idle time.Duration, logf func(string, ...any)) (*ProfileResult, error) {
	res := &ProfileResult{Dir: dcfg.ProfileDir, FleetN: fleetN}
	// Finer heap sampling than the default 512 KiB, for the fleet heap
	// profile (set before the hub allocates anything).
	runtime.MemProfileRate = 16 << 10
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	q := NewQueues("btbench")
	if err := q.Declare(env.AMQPURL); err != nil {
		return nil, err
	}
	defer q.Delete(env.AMQPURL)
	ih, err := StartInprocHub(ctx, env.AMQPURL, q, dcfg.Prefetch)
	if err != nil {
		return nil, err
	}
	defer ih.Stop()
	for _, stateful := range []bool{true, false} {
		d, err := profileDrain(ctx, env, ih, q, dcfg, stateful, self, logf)
		if err != nil {
			return nil, err
		}
		res.Drains = append(res.Drains, *d)
	}
	if fleetN > 0 {
		// Both ends of every connection live in this process: two
		// descriptors per worker.
		limit, err := RaiseNoFile()
		if err != nil {
			return nil, err
		}
		if most := (int(limit) - 1024) / 2; fleetN > most {
			logf("profile: open-files limit %d allows %d in-process workers, not %d", limit, most, fleetN)
			fleetN = most
			res.FleetN = most
		}
		var fleet *Fleet
		pprof.Do(ctx, pprof.Labels("side", "fleet"), func(context.Context) {
			fleet = StartFleet(FleetConfig{Addr: ih.Addr(), N: fleetN, Prefix: "prof"})
		})
		defer fleet.Close()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err = fleet.WaitRegistered(rctx)
		cancel()
		if err != nil {
			return nil, err
		}
		logf("profile: %d in-process workers registered; profiling CPU for %s", fleetN, idle)
		cpuPath := filepath.Join(dcfg.ProfileDir, "inproc-fleet-idle.cpu.pprof")
		if err := writeCPUProfile(ctx, cpuPath, idle, nil); err != nil {
			return nil, err
		}
		res.FleetCPU = PprofTags(ctx, cpuPath) + "\n\n" + PprofTop(ctx, self, cpuPath, "-cum", "-tagfocus=side=hub")
		if fleetJobs > 0 {
			ledger := NewLedger()
			coll, err := NewCollector(env.AMQPURL, q.Status, ledger)
			if err != nil {
				return nil, err
			}
			pub, err := NewPublisher(env.AMQPURL, q.Execute, ledger, 512)
			if err != nil {
				coll.Close()
				return nil, err
			}
			logf("profile: dispatching %d jobs to the %d in-process workers", fleetJobs, fleetN)
			dpath := filepath.Join(dcfg.ProfileDir, "inproc-fleet-dispatch.cpu.pprof")
			err = writeCPUProfile(ctx, dpath, 0, func(ctx context.Context) error {
				_, err := pub.PublishBacklog(ctx, "prof-fleet", fleetJobs)
				if cerr := pub.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
				wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
				defer cancel()
				return ledger.WaitAnswered(wctx, fleetJobs)
			})
			coll.Close()
			if err != nil {
				return nil, err
			}
			res.FleetDispatchThroughput = Rate(ledger.StatusTimes(), dcfg.Skip)
			res.FleetDispatchCPU = PprofTags(ctx, dpath) + "\n\n" + PprofTop(ctx, self, dpath, "-cum", "-tagfocus=side=hub")
			logf("profile: %.0f jobs/s with %d in-process workers", res.FleetDispatchThroughput, fleetN)
		}
		grPath := filepath.Join(dcfg.ProfileDir, "inproc-fleet.goroutine.pprof")
		if err := writeProfile("goroutine", grPath); err != nil {
			return nil, err
		}
		res.FleetGoroutines = PprofTop(ctx, self, grPath, "-tagfocus=side=hub")
		runtime.GC()
		heapPath := filepath.Join(dcfg.ProfileDir, "inproc-fleet.heap.pprof")
		if err := writeProfile("heap", heapPath); err != nil {
			return nil, err
		}
		res.FleetHeap = PprofTop(ctx, self, heapPath, "-sample_index=inuse_space", "-focus="+hubFrames)
	}
	return res, nil
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func stateDir(dir string, i int) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, fmt.Sprintf("state-prof-w%d", i))
}
