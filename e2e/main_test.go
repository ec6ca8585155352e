package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
)

// sharedAMQP is the machine's broker (scripts/ensure-rabbitmq).
const sharedAMQP = "amqp://guest:guest@127.0.0.1:5672/"

var bins cluster.Binaries

func TestMain(m *testing.M) {
	code := func() int {
		root, err := cluster.ModuleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		dir, err := os.MkdirTemp("", "blacktree-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if bins, err = cluster.Build(ctx, root, dir, false); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build binaries:", err)
			return 1
		}
		code := m.Run()
		printReport()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: leaked goroutines:", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

// report collects one line per scenario with its measured figure.
var report struct {
	mu    sync.Mutex // guards lines
	lines []string
}

func record(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf("%-42s %s", t.Name(), fmt.Sprintf(format, args...))
	t.Log(line)
	report.mu.Lock()
	report.lines = append(report.lines, line)
	report.mu.Unlock()
}

func printReport() {
	report.mu.Lock()
	defer report.mu.Unlock()
	sort.Strings(report.lines)
	fmt.Println("\n=== e2e report (scenario, measured figure)")
	for _, l := range report.lines {
		fmt.Println(l)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// env is one isolated deployment: its own queues, tokens and processes.
type env struct {
	t                       *testing.T
	dir                     string
	amqpURL                 string
	execQ, statusQ          string
	workerToken, adminToken string
	tokensFile, tokenFile   string
	adminFile               string
	cp                      *cluster.ControlPlane
	procs                   []*cluster.Process
}

func newEnv(t *testing.T, amqpURL string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), amqpURL: amqpURL}
	id := randomHex(6)
	e.execQ, e.statusQ = "e2e.execute."+id, "e2e.status."+id
	e.workerToken, e.adminToken = "wt-"+randomHex(16), "at-"+randomHex(16)
	e.tokensFile = filepath.Join(e.dir, "worker-tokens")
	e.tokenFile = filepath.Join(e.dir, "worker-token")
	e.adminFile = filepath.Join(e.dir, "admin-token")
	for path, content := range map[string]string{
		e.tokensFile: "e2e-workers:" + e.workerToken + "\n",
		e.tokenFile:  e.workerToken + "\n",
		e.adminFile:  e.adminToken + "\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatalf("WriteFile(%s) = %v", path, err)
		}
	}
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) cleanup() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		if err := p.Stop(20 * time.Second); err != nil && e.t.Failed() {
			e.t.Logf("%s: %v", p.Name, err)
		}
		if e.t.Failed() {
			e.t.Logf("--- %s output ---\n%s", p.Name, tail(p.Output(), 4000))
		}
		e.keepLog(p)
	}
	if e.cp != nil {
		_ = e.cp.DeleteQueues(e.execQ, e.statusQ, e.execQ+".dead", e.execQ+".ledger", e.cancelQ())
		e.cp.Close()
	}
}

// keepLog writes p's whole output to $E2E_LOG_DIR/<test>/<process>.log
// when that variable is set (for reading a run afterwards).
func (e *env) keepLog(p *cluster.Process) {
	root := os.Getenv("E2E_LOG_DIR")
	if root == "" {
		return
	}
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '/' || r == ' ' || r == ':' || r == '@' {
				return '_'
			}
			return r
		}, s)
	}
	dir := filepath.Join(root, clean(e.t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Logf("keep log: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, clean(p.Name)+".log"), []byte(p.Output()), 0o644); err != nil {
		e.t.Logf("keep log: %v", err)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// hubProc is a started hub.
type hubProc struct {
	*cluster.Process
	GRPCAddr, HTTPAddr string
	args               []string
}

func (e *env) hubArgs(grpcAddr, httpAddr string, extra []string) []string {
	return append([]string{
		"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--amqp-url", e.amqpURL,
		"--execute-queue", e.execQ, "--status-queue", e.statusQ,
		"--worker-tokens", e.tokensFile, "--admin-token-file", e.adminFile,
		"--cancel-queue", e.cancelQ(),
	}, extra...)
}

// cancelQ is the env's cancel queue, which its hubs consume.
func (e *env) cancelQ() string { return e.execQ + ".cancel" }

// startHub starts a hub and waits until /readyz answers 200. The first hub
// declares the queues; the control plane connects after it.
func (e *env) startHub(extra ...string) *hubProc {
	e.t.Helper()
	grpcAddr, err := cluster.FreeAddr()
	if err != nil {
		e.t.Fatalf("FreeAddr() = %v", err)
	}
	httpAddr, err := cluster.FreeAddr()
	if err != nil {
		e.t.Fatalf("FreeAddr() = %v", err)
	}
	return e.startHubAt(grpcAddr, httpAddr, extra...)
}

func (e *env) startHubAt(grpcAddr, httpAddr string, extra ...string) *hubProc {
	e.t.Helper()
	args := e.hubArgs(grpcAddr, httpAddr, extra)
	p, err := cluster.Start("hub@"+grpcAddr, bins.Hub, args, nil, nil)
	if err != nil {
		e.t.Fatalf("start hub: %v", err)
	}
	e.procs = append(e.procs, p)
	h := &hubProc{Process: p, GRPCAddr: grpcAddr, HTTPAddr: httpAddr, args: args}
	e.waitReady(h)
	if e.cp == nil {
		newCP := cluster.NewControlPlane
		if strings.Contains(e.amqpURL, ",") { // the nodes of a cluster
			newCP = func(list, execQ, statusQ string) (*cluster.ControlPlane, error) {
				return cluster.NewClusterControlPlane(strings.Split(list, ","), execQ, statusQ)
			}
		}
		cp, err := newCP(e.amqpURL, e.execQ, e.statusQ)
		if err != nil {
			e.t.Fatalf("NewControlPlane() = %v", err)
		}
		e.cp = cp
	}
	return h
}

func (e *env) waitReady(h *hubProc) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cluster.WaitHTTP200(ctx, "http://"+h.HTTPAddr+"/readyz", h.Process); err != nil {
		e.t.Fatalf("hub not ready: %v", err)
	}
}

// metricsText is the hub's /metrics page.
func metricsText(t *testing.T, h *hubProc) string {
	t.Helper()
	resp, err := http.Get("http://" + h.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics = %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return string(body)
}

// ready reports whether /readyz answers 200 now.
func ready(h *hubProc) bool {
	resp, err := http.Get("http://" + h.HTTPAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// diagnose summarises a hub's view for a failure message: readiness, jobs
// and workers by state, and its last warnings, errors and broker-adapter
// lines. A failure's message is what CI shows first, before any process
// output.
func (e *env) diagnose(h *hubProc) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n--- hub diagnosis: /readyz ok=%v", ready(h))
	client, ctx := e.admin(h)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if resp, err := client.ListJobs(ctx, &blacktreev1.ListJobsRequest{}); err != nil {
		fmt.Fprintf(&b, "; ListJobs: %v", err)
	} else {
		states := map[string]int{}
		for _, j := range resp.GetJobs() {
			states[j.GetState().String()]++
		}
		fmt.Fprintf(&b, "; jobs in flight by state: %v", states)
	}
	if resp, err := client.ListWorkers(ctx, &blacktreev1.ListWorkersRequest{}); err != nil {
		fmt.Fprintf(&b, "; ListWorkers: %v", err)
	} else {
		for _, w := range resp.GetWorkers() {
			fmt.Fprintf(&b, "; worker %.8s %s running=%d", w.GetWorkerId(), w.GetState(), len(w.GetRunningJobIds()))
		}
	}
	var warns []string
	for _, line := range strings.Split(h.Output(), "\n") {
		if strings.Contains(line, "[WARN]") || strings.Contains(line, "[ERROR]") || strings.Contains(line, "hub.rabbit") {
			warns = append(warns, line)
		}
	}
	if len(warns) > 15 {
		warns = append([]string{fmt.Sprintf("(%d earlier lines)", len(warns)-15)}, warns[len(warns)-15:]...)
	}
	fmt.Fprintf(&b, "\nlast hub warnings and broker lines:\n%s", strings.Join(warns, "\n"))
	return b.String()
}

// startWorker starts a worker connected to hubs (comma-joined --hub list).
func (e *env) startWorker(name string, hubs []string, extra ...string) *cluster.Process {
	e.t.Helper()
	args := append([]string{
		"--hub", strings.Join(hubs, ","), "--insecure", "--token-file", e.tokenFile,
		"--name", name, "--state-dir", filepath.Join(e.dir, "state-"+name),
	}, extra...)
	p, err := cluster.Start("worker "+name, bins.Worker, args, nil, nil)
	if err != nil {
		e.t.Fatalf("start worker: %v", err)
	}
	e.procs = append(e.procs, p)
	return p
}

// admin dials a hub's AdminService with the admin token.
func (e *env) admin(h *hubProc) (blacktreev1.AdminServiceClient, context.Context) {
	e.t.Helper()
	conn, err := grpc.NewClient(h.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatalf("grpc.NewClient() = %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.adminToken)
	return blacktreev1.NewAdminServiceClient(conn), ctx
}

// waitWorkers waits until the hub lists n workers in a live state.
func (e *env) waitWorkers(h *hubProc, n int, within time.Duration) {
	e.t.Helper()
	client, ctx := e.admin(h)
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.ListWorkers(ctx, &blacktreev1.ListWorkersRequest{})
		live := 0
		if err == nil {
			for _, w := range resp.GetWorkers() {
				if s := w.GetState(); s == blacktreev1.WorkerState_WORKER_STATE_FREE || s == blacktreev1.WorkerState_WORKER_STATE_BUSY {
					live++
				}
			}
			if live >= n {
				return
			}
		}
		select {
		case <-deadline.C:
			e.t.Fatalf("hub %s: %d live workers after %s (err %v), want %d", h.GRPCAddr, live, within, err, n)
		case <-tick.C: // polling an external process: there is no event to wait on
		}
	}
}

// job returns a valid noop-able JobRequest.
func job(id string) *blacktreev1.JobRequest {
	return &blacktreev1.JobRequest{JobId: id, RepoUrl: "user/reponame", Branch: "main",
		DockerfilePath: "Dockerfile", ContextDir: ".", ImageName: "myapp:latest", GithubToken: "ghp_e2e_" + id}
}

func (e *env) publish(ctx context.Context, ids ...string) {
	e.t.Helper()
	for _, id := range ids {
		if err := e.cp.Publish(ctx, job(id)); err != nil {
			e.t.Fatalf("Publish(%s) = %v", id, err)
		}
	}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}
