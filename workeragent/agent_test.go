package workeragent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/syncbuf"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// wait is the generous bound for anything the tests wait for.
const wait = 10 * time.Second

const testToken = "ghp_S3cr3tT0kenValue0123456789"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type running struct {
	agent  *Agent
	cancel context.CancelFunc
	errc   chan error
	logs   *syncbuf.Buffer
}

// stop cancels Run and returns its error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.errc:
		r.errc <- err
		return err
	case <-time.After(wait):
		t.Fatalf("Run() did not return within %s", wait)
		return nil
	}
}

// startAgent builds an agent with test defaults (plaintext, fast backoff,
// a temporary state dir) and runs it until the test ends.
func startAgent(t *testing.T, cfg Config, exec executor.Executor, tweaks ...func(*Agent)) *running {
	t.Helper()
	cfg.Insecure = cfg.TLS == nil
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 200*time.Millisecond
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	logs := &syncbuf.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "agent", Level: hclog.Debug, Output: io.MultiWriter(logs, t.Output())})
	a, err := New(cfg, exec, logger)
	if err != nil {
		t.Fatalf("New() error = %v, want nil", err)
	}
	for _, tweak := range tweaks {
		tweak(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{agent: a, cancel: cancel, errc: make(chan error, 1), logs: logs}
	go func() { r.errc <- a.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop(t) })
	return r
}

func jobReq(id string) *blacktreev1.JobRequest {
	return &blacktreev1.JobRequest{JobId: id, RepoUrl: "user/repo", Branch: "main", ImageName: "myapp:latest", GithubToken: testToken}
}

// gateExec runs jobs until released (or cancelled), counting concurrent
// and total runs.
type gateExec struct {
	mu       sync.Mutex // guards the following
	gates    map[string]chan struct{}
	open     bool
	runs     map[string]int
	cur, max int

	started chan string
}

func newGateExec() *gateExec {
	return &gateExec{gates: map[string]chan struct{}{}, runs: map[string]int{}, started: make(chan string, 1024)}
}

func (g *gateExec) Name() string { return "gate" }

func (g *gateExec) gateLocked(id string) chan struct{} {
	c, ok := g.gates[id]
	if !ok {
		c = make(chan struct{})
		if g.open {
			close(c)
		}
		g.gates[id] = c
	}
	return c
}

// release lets job id finish.
func (g *gateExec) release(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.gateLocked(id)
	select {
	case <-c:
	default:
		close(c)
	}
}

// openAll lets every job, current and future, finish.
func (g *gateExec) openAll() {
	g.mu.Lock()
	g.open = true
	ids := make([]string, 0, len(g.gates))
	for id := range g.gates {
		ids = append(ids, id)
	}
	g.mu.Unlock()
	for _, id := range ids {
		g.release(id)
	}
}

func (g *gateExec) stats(id string) (runs, maxConcurrent int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs[id], g.max
}

func (g *gateExec) Run(ctx context.Context, req *blacktreev1.JobRequest, logs io.Writer) *blacktreev1.JobResponse {
	id := req.GetJobId()
	g.mu.Lock()
	g.runs[id]++
	g.cur++
	g.max = max(g.max, g.cur)
	c := g.gateLocked(id)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.cur--
		g.mu.Unlock()
	}()
	fmt.Fprintf(logs, "gate: %s started\n", id)
	g.started <- id
	select {
	case <-c:
		return &blacktreev1.JobResponse{JobId: id, Success: true, ImageUrl: req.GetImageName(), Logs: "gate: done\n"}
	case <-ctx.Done():
		return &blacktreev1.JobResponse{JobId: id, Error: fmt.Sprintf("cancelled: %v", context.Cause(ctx))}
	}
}

func waitStarted(t *testing.T, g *gateExec, id string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case got := <-g.started:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("executor did not start %s within %s", id, wait)
		}
	}
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not true within %s", what, wait)
		}
	}
}

func resultFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, resultsDir))
	if err != nil {
		t.Fatalf("ReadDir() error = %v", err)
	}
	return len(ents)
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "no hub", cfg: Config{Insecure: true}},
		{name: "plaintext not allowed", cfg: Config{HubAddrs: []string{"127.0.0.1:1"}}},
		{name: "negative slots", cfg: Config{HubAddrs: []string{"127.0.0.1:1"}, Insecure: true, Slots: -1}},
		{name: "empty address", cfg: Config{HubAddrs: []string{""}, Insecure: true}},
		{name: "negative persist delay", cfg: Config{HubAddrs: []string{"h:1"}, Insecure: true, PersistResultsAfter: -time.Millisecond}},
		{name: "backoff out of order", cfg: Config{HubAddrs: []string{"h:1"}, Insecure: true, BackoffMin: time.Minute, BackoffMax: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, executor.Noop{}, nil)
			if !errors.Is(err, ErrConfig) {
				t.Errorf("New() error = %v, want ErrConfig", err)
			}
		})
	}
}

func TestKeepaliveTimeRaised(t *testing.T) {
	a, err := New(Config{HubAddrs: []string{"h:1"}, Insecure: true, KeepaliveTime: time.Second}, executor.Noop{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if got := a.cfg.KeepaliveTime; got != MinKeepaliveTime {
		t.Errorf("KeepaliveTime = %s, want %s", got, MinKeepaliveTime)
	}
}

func TestRunTwice(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{})
	r := startAgent(t, Config{HubAddrs: []string{hub.Addr}}, executor.Noop{})
	hub.NextStream(t, wait)
	if err := r.agent.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("Run() = %v, want ErrAlreadyRunning", err)
	}
}
