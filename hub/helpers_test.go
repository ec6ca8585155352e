package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/rabbit"
	"github.com/blacktree/blacktree/internal/syncbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const startHint = "start it with: bash /work/shared/scripts/ensure-rabbitmq, or point BLACKTREE_TEST_AMQP_URL at a broker"

var nonName = regexp.MustCompile(`[^A-Za-z0-9]+`)

// env is a pair of random queues on the real RabbitMQ, deleted at cleanup,
// and a control plane publishing to / reading from them.
type env struct {
	t              *testing.T
	id             string
	execQ, statusQ string
	cp             *cluster.ControlPlane
}

func newEnv(t *testing.T) *env {
	t.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	id := nonName.ReplaceAllString(t.Name(), "-") + "-" + hex.EncodeToString(b)
	e := &env{t: t, id: id, execQ: "bt-hubtest-exec-" + id, statusQ: "bt-hubtest-status-" + id}
	t.Cleanup(func() {
		if e.cp != nil {
			_ = e.cp.DeleteQueues(e.execQ, e.statusQ, e.execQ+rabbit.DeadLetterSuffix, e.execQ+rabbit.LedgerSuffix)
			_ = e.cp.Close()
		}
	})
	return e
}

// testHub is a Hub on its own rabbit.Client.
type testHub struct {
	*Hub
	rc     *rabbit.Client
	runErr chan error
	rcDone chan struct{}
	once   sync.Once
}

// startHub starts a hub (and its broker client) on e's queues.
func (e *env) startHub(mutate func(*Config), rmutate ...func(*rabbit.Config)) *testHub {
	t := e.t
	t.Helper()
	rcfg := rabbit.Config{URL: cluster.SharedBrokerURL(), ExecuteQueue: e.execQ, StatusQueue: e.statusQ, ConnectionName: "bt-hubtest-" + e.id,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond}
	for _, f := range rmutate {
		f(&rcfg)
	}
	logs := &syncbuf.Buffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Trace, Output: io.MultiWriter(testWriter{t}, logs)})
	t.Cleanup(func() {
		// Runs after the hub stopped (cleanups run last-in first-out).
		if strings.Contains(logs.String(), secretToken) {
			t.Errorf("hub logs contain the job's githubToken")
		}
	})
	rc, err := rabbit.New(rcfg, logger)
	if err != nil {
		t.Fatalf("rabbit.New() = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rc.Connect(ctx); err != nil {
		t.Fatalf("RabbitMQ is not reachable: %v; %s", err, startHint)
	}
	th := &testHub{rc: rc, runErr: make(chan error, 1), rcDone: make(chan struct{})}
	go func() { defer close(th.rcDone); _ = rc.Run(context.Background()) }()
	// The hubs of one env are one deployment: they share its id and key.
	cfg := Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", HoldTimeout: time.Second, DrainTimeout: time.Second,
		DeploymentID: DeploymentID(cluster.SharedBrokerURL(), e.execQ, e.statusQ), DispatchKey: []byte("test key " + e.id)}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg, rc, logger)
	if err != nil {
		_ = rc.Shutdown(context.Background())
		t.Fatalf("New() = %v", err)
	}
	th.Hub = h
	go func() { th.runErr <- h.Run(context.Background()) }()
	select {
	case <-h.Listening():
	case err := <-th.runErr:
		t.Fatalf("Run() = %v", err)
	}
	if e.cp == nil {
		cp, err := cluster.NewControlPlane(cluster.SharedBrokerURL(), e.execQ, e.statusQ)
		if err != nil {
			t.Fatalf("NewControlPlane() = %v; %s", err, startHint)
		}
		e.cp = cp
	}
	t.Cleanup(func() { th.stop(t, 2*time.Second) })
	return th
}

// stop drains the hub for at most d, then stops it and its broker client.
func (th *testHub) stop(t *testing.T, d time.Duration) {
	th.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_ = th.Shutdown(ctx)
		select {
		case err := <-th.runErr:
			if err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run() did not return after Shutdown")
		}
		_ = th.rc.Shutdown(context.Background())
		<-th.rcDone
	})
}

const secretToken = "ghp_secret_token_value"

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// fakeWorker is a test worker: a real gRPC client on the generated API.
type fakeWorker struct {
	t      *testing.T
	id     string
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[blacktreev1.WorkerMessage, blacktreev1.HubMessage]
	cancel context.CancelFunc
	frames chan *blacktreev1.HubMessage
	done   chan struct{}
	auto   bool // accept every RunJob and answer it with a success at once
	sendMu sync.Mutex
	reg    *blacktreev1.Registered
	err    error // why the stream ended; read after done is closed
}

func dialWorker(t *testing.T, addr string, reg *blacktreev1.Register, auto bool) *fakeWorker {
	t.Helper()
	f, err := dialWorkerAs(t, addr, "", reg, auto)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// dialWorkerAs dials with cred in the call's credMetadata (see
// credentialFromMetadata) and fails when no Registered comes.
func dialWorkerAs(t *testing.T, addr, cred string, reg *blacktreev1.Register, auto bool) (*fakeWorker, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if cred != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, credMetadata, cred)
	}
	stream, err := blacktreev1.NewWorkerServiceClient(conn).Connect(ctx)
	if err != nil {
		cancel()
		_ = conn.Close()
		t.Fatalf("Connect() = %v", err)
	}
	if reg.Slots == 0 {
		reg.Slots = 1
	}
	f := &fakeWorker{t: t, id: reg.WorkerId, conn: conn, stream: stream, cancel: cancel,
		frames: make(chan *blacktreev1.HubMessage, 256), done: make(chan struct{}), auto: auto}
	f.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Register{Register: reg}})
	go f.recv()
	t.Cleanup(f.kill)
	select {
	case m := <-f.frames:
		if f.reg = m.GetRegistered(); f.reg == nil {
			t.Fatalf("first frame = %v, want Registered", m)
		}
	case <-f.done:
		return nil, fmt.Errorf("stream ended before Registered: %w", f.err)
	case <-time.After(10 * time.Second):
		t.Fatalf("no Registered within 10s")
	}
	return f, nil
}

// credMetadata carries a fake worker's credential key in tests; a hub
// started with credentialFromMetadata binds worker ids to it.
const credMetadata = "test-credential"

func credentialFromMetadata(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(credMetadata); len(v) == 1 {
		return v[0]
	}
	return ""
}

func (f *fakeWorker) recv() {
	defer close(f.done)
	for {
		m, err := f.stream.Recv()
		if err != nil {
			f.err = err
			return
		}
		if rj := m.GetRunJob(); rj != nil {
			tickets.Store(f.id+"/"+rj.GetJob().GetJobId(), rj.GetDispatchTicket())
		}
		if rj := m.GetRunJob(); rj != nil && f.auto {
			id := rj.GetJob().GetJobId()
			f.accept(id)
			f.result(id, true)
			continue
		}
		select {
		case f.frames <- m:
		default:
		}
	}
}

func (f *fakeWorker) send(m *blacktreev1.WorkerMessage) {
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	_ = f.stream.Send(m)
}

func (f *fakeWorker) accept(id string) {
	f.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobAccepted{JobAccepted: &blacktreev1.JobAccepted{JobId: id}}})
}

func (f *fakeWorker) result(id string, ok bool) {
	f.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_JobResult{JobResult: &blacktreev1.JobResult{Response: &blacktreev1.JobResponse{
		JobId: id, Success: ok, Logs: "done", ImageUrl: "reg.example/img:1"}, DispatchTicket: ticketOf(f.id, id)}}})
}

// tickets holds the dispatch ticket of every RunJob a fake worker got, by
// "worker id/job id", so that a later session of that worker can claim
// the job or re-send its result, as a real worker does.
var tickets sync.Map

func ticketOf(workerID, jobID string) string {
	t, _ := tickets.Load(workerID + "/" + jobID)
	s, _ := t.(string)
	return s
}

// next waits for the next frame matching pick.
func (f *fakeWorker) next(what string, pick func(*blacktreev1.HubMessage) bool) *blacktreev1.HubMessage {
	f.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-f.frames:
			if pick(m) {
				return m
			}
		case <-f.done:
			f.t.Fatalf("worker %s: stream ended while waiting for %s", f.id, what)
		case <-deadline:
			f.t.Fatalf("worker %s: no %s within 10s", f.id, what)
		}
	}
}

func (f *fakeWorker) expectRunJob() *blacktreev1.JobRequest {
	f.t.Helper()
	return f.next("RunJob", func(m *blacktreev1.HubMessage) bool { return m.GetRunJob() != nil }).GetRunJob().GetJob()
}

func (f *fakeWorker) expectResultAck(id string) {
	f.t.Helper()
	f.next("ResultAck "+id, func(m *blacktreev1.HubMessage) bool { return m.GetResultAck().GetJobId() == id })
}

// expectResultAcks waits for ResultAck of every id, in any order.
func (f *fakeWorker) expectResultAcks(ids ...string) {
	f.t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for len(want) > 0 {
		m := f.next("ResultAck", func(m *blacktreev1.HubMessage) bool { return want[m.GetResultAck().GetJobId()] })
		delete(want, m.GetResultAck().GetJobId())
	}
}

// kill drops the connection abruptly.
func (f *fakeWorker) kill() {
	f.cancel()
	_ = f.conn.Close()
	<-f.done
}

func validJob(id string) *blacktreev1.JobRequest {
	return &blacktreev1.JobRequest{JobId: id, RepoUrl: "owner/repo", Branch: "main", DockerfilePath: "Dockerfile",
		ContextDir: ".", ImageName: "myapp:latest", GithubToken: secretToken}
}

func (e *env) publish(reqs ...*blacktreev1.JobRequest) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range reqs {
		if err := e.cp.Publish(ctx, r); err != nil {
			e.t.Fatalf("Publish(%s) = %v", r.GetJobId(), err)
		}
	}
}

func (e *env) waitStatus(ids ...string) map[string]*blacktreev1.JobResponse {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := e.cp.WaitFor(ctx, ids...)
	if err != nil {
		e.t.Fatalf("WaitFor() = %v", err)
	}
	return got
}

func (e *env) depth(q string) int {
	e.t.Helper()
	n, err := e.cp.QueueDepth(q)
	if err != nil {
		e.t.Fatalf("QueueDepth(%s) = %v", q, err)
	}
	return n
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("%s: not true within %v", what, d)
		case <-tick.C:
		}
	}
}

func (h *testHub) jobState(id string) blacktreev1.JobState {
	for _, j := range h.dispatcher.list() {
		if j.GetJobId() == id {
			return j.GetState()
		}
	}
	return blacktreev1.JobState_JOB_STATE_UNSPECIFIED
}

func (h *testHub) workerState(id string) blacktreev1.WorkerState {
	for _, w := range h.manager.list() {
		if w.GetWorkerId() == id {
			return w.GetState()
		}
	}
	return blacktreev1.WorkerState_WORKER_STATE_UNSPECIFIED
}

// sessionOf is the session id of the worker's live session, or "".
func (h *testHub) sessionOf(id string) string {
	for _, w := range h.manager.list() {
		if w.GetWorkerId() == id && w.GetState() != stateDead {
			return w.GetSessionId()
		}
	}
	return ""
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
