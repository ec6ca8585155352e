package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/rabbit"
)

// Env is where the Blacktree side of a run lives: the built binaries,
// token files and a scratch directory.
type Env struct {
	AMQPURL     string
	Bins        cluster.Binaries
	Dir         string
	WorkerToken string
	AdminToken  string
	LogLevel    string // hub and worker --log-level
	// HubEnv is added to every hub's environment (KEY=VALUE), e.g.
	// GOGC=50; the reports print it before the hub's command line.
	HubEnv []string
	// WorkerEnv is the same for every worker process.
	WorkerEnv []string
	// Tee, when set, receives every process's output. Without it each
	// process writes its output to a file of its own in Dir
	// (cluster.StartToFile), so that no goroutine of the load generator
	// pays for carrying the hub's and workers' log lines.
	Tee io.Writer

	logSeq                           atomic.Int64 // numbers the output files
	tokensFile, tokenFile, adminFile string
}

// NewEnv builds the hub and worker binaries from the module at root into
// dir/bin and writes token files.
func NewEnv(ctx context.Context, amqpURL, root, dir, logLevel string) (*Env, error) {
	bins, err := cluster.Build(ctx, root, filepath.Join(dir, "bin"), false)
	if err != nil {
		return nil, err
	}
	e := &Env{
		AMQPURL:     amqpURL,
		Bins:        bins,
		Dir:         dir,
		WorkerToken: "wt-" + randomHex(16),
		AdminToken:  "at-" + randomHex(16),
		LogLevel:    logLevel,
		tokensFile:  filepath.Join(dir, "worker-tokens"),
		tokenFile:   filepath.Join(dir, "worker-token"),
		adminFile:   filepath.Join(dir, "admin-token"),
	}
	for path, content := range map[string]string{
		e.tokensFile: "btbench:" + e.WorkerToken + "\n",
		e.tokenFile:  e.WorkerToken + "\n",
		e.adminFile:  e.AdminToken + "\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Hub is a started hub process.
type Hub struct {
	*cluster.Process
	GRPCAddr, HTTPAddr string
	adminToken         string
}

// HubArgs returns the command line StartHub uses (for the report).
func (e *Env) HubArgs(q Queues, grpcAddr, httpAddr string, extra ...string) []string {
	args := []string{"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--amqp-url", e.AMQPURL,
		"--execute-queue", q.Execute, "--status-queue", q.Status,
		"--worker-tokens", e.tokensFile, "--admin-token-file", e.adminFile}
	if e.LogLevel != "" {
		args = append(args, "--log-level", e.LogLevel)
	}
	return append(args, extra...)
}

// StartHub starts a hub on free loopback ports and waits for /readyz.
func (e *Env) StartHub(ctx context.Context, q Queues, extra ...string) (*Hub, error) {
	grpcAddr, err := cluster.FreeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := cluster.FreeAddr()
	if err != nil {
		return nil, err
	}
	p, err := e.start("hub", e.Bins.Hub, e.HubArgs(q, grpcAddr, httpAddr, extra...), e.HubEnv)
	if err != nil {
		return nil, err
	}
	h := &Hub{Process: p, GRPCAddr: grpcAddr, HTTPAddr: httpAddr, adminToken: e.AdminToken}
	if err := h.waitReady(ctx); err != nil {
		p.Kill()
		return nil, err
	}
	return h, nil
}

func (h *Hub) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.HTTPAddr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-h.Done():
			return fmt.Errorf("hub exited before ready:\n%s", tail(h.Output(), 3000))
		case <-ctx.Done():
			return fmt.Errorf("hub not ready: %w\n%s", ctx.Err(), tail(h.Output(), 3000))
		case <-tick.C: // polling another process: there is no event to wait on
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Admin returns an AdminService client for the hub and a context carrying
// the admin token. close releases the connection.
func (h *Hub) Admin(ctx context.Context) (blacktreev1.AdminServiceClient, context.Context, func(), error) {
	conn, err := grpc.NewClient(h.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.adminToken)
	return blacktreev1.NewAdminServiceClient(conn), ctx, func() { conn.Close() }, nil
}

// LiveWorkers counts workers the hub lists as free or busy.
func LiveWorkers(ctx context.Context, c blacktreev1.AdminServiceClient) (int, error) {
	resp, err := c.ListWorkers(ctx, &blacktreev1.ListWorkersRequest{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, w := range resp.GetWorkers() {
		if s := w.GetState(); s == blacktreev1.WorkerState_WORKER_STATE_FREE || s == blacktreev1.WorkerState_WORKER_STATE_BUSY {
			n++
		}
	}
	return n, nil
}

// WaitLiveWorkers polls ListWorkers until n workers are live.
func WaitLiveWorkers(ctx context.Context, c blacktreev1.AdminServiceClient, n int, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var got int
	var err error
	if perr := cluster.Poll(ctx, 50*time.Millisecond, func() bool {
		got, err = LiveWorkers(ctx, c)
		return err == nil && got >= n
	}); perr != nil {
		return fmt.Errorf("%d of %d workers live (last error %v): %w", got, n, err, perr)
	}
	return nil
}

// Shown is a command line as the report prints it: the run's scratch
// directory as $DIR and the broker URL without its password.
func (e *Env) Shown(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == e.AMQPURL {
			a = rabbit.MaskURL(a)
		}
		out[i] = strings.ReplaceAll(a, e.Dir, "$DIR")
	}
	return out
}

// WorkerArgs returns a noop worker's command line.
func (e *Env) WorkerArgs(name, hub string, slots int, delay time.Duration) []string {
	args := []string{"--hub", hub, "--insecure", "--token-file", e.tokenFile, "--name", name,
		"--state-dir", filepath.Join(e.Dir, "state-"+name), "--executor", "noop",
		"--noop-delay", delay.String(), "--slots", fmt.Sprint(slots)}
	if e.LogLevel != "" {
		args = append(args, "--log-level", e.LogLevel)
	}
	return args
}

// StartWorker starts a real noop worker process.
func (e *Env) StartWorker(name, hub string, slots int, delay time.Duration) (*cluster.Process, error) {
	return e.start("worker "+name, e.Bins.Worker, e.WorkerArgs(name, hub, slots, delay), e.WorkerEnv)
}

// start starts a process with its output tee'd to e.Tee, or else written
// by the process to a file of its own in e.Dir.
func (e *Env) start(name, bin string, args, env []string) (*cluster.Process, error) {
	if e.Tee != nil {
		return cluster.Start(name, bin, args, env, e.Tee)
	}
	file := fmt.Sprintf("%03d-%s.log", e.logSeq.Add(1), strings.ReplaceAll(name, " ", "-"))
	return cluster.StartToFile(name, bin, args, env, filepath.Join(e.Dir, file))
}

// Metrics scrapes the hub's /metrics and returns the unlabelled samples
// (e.g. go_goroutines, go_gc_duration_seconds_count).
func (h *Hub) Metrics(ctx context.Context) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.HTTPAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(b)), nil
}

// parseMetrics reads unlabelled samples from Prometheus text format.
func parseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		if l == "" || l[0] == '#' || strings.ContainsRune(l, '{') {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}
