package hub

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func dialHub(t *testing.T, h *testHub) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(h.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// AdminService lists workers and jobs (never the token) and drains a
// worker: it gets Drain and no new jobs.
func TestAdminService(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{
		WorkerId: "w1",
		Name:     "alpha",
		Slots:    2,
		Labels:   map[string]string{"arch": "amd64"},
	}, false)
	e.publish(validJob("adm-1"))
	w.accept(w.expectRunJob().GetJobId())
	eventually(t, 5*time.Second, "job running", func() bool { return h.jobState("adm-1") == jobRunning })

	admin := blacktreev1.NewAdminServiceClient(dialHub(t, h))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := admin.ListWorkers(ctx, &blacktreev1.ListWorkersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.GetWorkers()) != 1 || ws.GetWorkers()[0].GetState() != stateFree || ws.GetWorkers()[0].GetRunningJobIds()[0] != "adm-1" {
		t.Errorf("ListWorkers() = %v, want w1 free running adm-1", ws)
	}
	js, err := admin.ListJobs(ctx, &blacktreev1.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(js.GetJobs()) != 1 || js.GetJobs()[0].GetWorkerId() != "w1" || js.GetJobs()[0].GetState() != jobRunning {
		t.Errorf("ListJobs() = %v, want adm-1 running on w1", js)
	}
	if b, _ := protojson.Marshal(js); strings.Contains(string(b), "ghp_secret_token_value") {
		t.Errorf("ListJobs() answer carries the token: %s", b)
	}
	if _, err := admin.DrainWorker(ctx, &blacktreev1.DrainWorkerRequest{WorkerId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("DrainWorker(nope) = %v, want NotFound", err)
	}
	dr, err := admin.DrainWorker(ctx, &blacktreev1.DrainWorkerRequest{WorkerId: "alpha", Reason: "maintenance"})
	if err != nil || dr.GetWorker().GetState() != stateDraining {
		t.Fatalf("DrainWorker(alpha) = %v, %v, want draining", dr, err)
	}
	w.next("Drain", func(m *blacktreev1.HubMessage) bool { return m.GetDrain() != nil })
	// A worker cannot undo an operator's drain (a revoked or hostile worker
	// would clear it to keep receiving jobs and their tokens).
	w.send(&blacktreev1.WorkerMessage{Frame: &blacktreev1.WorkerMessage_Heartbeat{Heartbeat: &blacktreev1.Heartbeat{Draining: false}}})
	e.publish(validJob("adm-2"))
	eventually(t, 5*time.Second, "adm-2 held (draining worker takes no job)", func() bool { return h.jobState("adm-2") == jobPending })
}

// HTTP probes and metrics, gRPC health and reflection.
func TestProbesHealthReflection(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1"}, true)
	base := "http://" + h.HTTPAddr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, _ := get("/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without Pprof = %d, want 404", code)
	}
	eventually(t, 10*time.Second, "/readyz 200", func() bool { code, _ := get("/readyz"); return code == 200 })
	e.publish(validJob("m-1"))
	e.waitStatus("m-1")
	eventually(t, 5*time.Second, "metrics updated", func() bool {
		_, body := get("/metrics")
		return strings.Contains(body, `blacktree_workers{state="free"} 1`) && strings.Contains(body, "blacktree_jobs_succeeded_total 1") &&
			strings.Contains(body, "blacktree_held_deliveries 0") && strings.Contains(body, "blacktree_dispatch_latency_seconds_count 1") &&
			strings.Contains(body, "blacktree_status_publish_seconds_count 1") &&
			strings.Contains(body, "blacktree_heartbeat_interval_seconds 5\n")
	})
	if _, body := get("/metrics"); strings.Contains(body, "m-1") {
		t.Errorf("/metrics carries a job id")
	}

	conn := dialHub(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check() = %v, %v, want SERVING", hr, err)
	}
	rs, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = rs.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}})
	rr, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "blacktree.v1.WorkerService") || !strings.Contains(got, "blacktree.v1.AdminService") {
		t.Errorf("reflection services = %s, want the blacktree services", got)
	}
	_ = rs.CloseSend()

	h.stop(t, 2*time.Second)
	if code, _ := func() (int, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, ""
	}(); code == 200 {
		t.Errorf("/readyz after Shutdown = 200, want not ready")
	}
}

// Shutdown drains: held deliveries go back, a running job may finish and
// its result is published before the hub stops; Shutdown is idempotent.
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(nil)
	w := dialWorker(t, h.GRPCAddr().String(), &blacktreev1.Register{WorkerId: "w1"}, false)
	e.publish(validJob("drain-1"), validJob("drain-2"))
	w.accept(w.expectRunJob().GetJobId())
	eventually(t, 5*time.Second, "one running, one held", func() bool { return h.dispatcher.heldCount() == 1 })
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- h.Shutdown(ctx)
	}()
	eventually(t, 5*time.Second, "held job requeued", func() bool { return e.depth(e.execQ) == 1 })
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown() = %v before the running job finished", err)
	default:
	}
	w.result("drain-1", true)
	w.expectResultAck("drain-1")
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Shutdown() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown() did not return after the last job finished")
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown() = %v, want nil", err)
	}
	e.waitStatus("drain-1")
}

// Config.Pprof serves Go profiles on the HTTP listener.
func TestPprofOptIn(t *testing.T) {
	e := newEnv(t)
	h := e.startHub(func(c *Config) { c.Pprof = true })
	resp, err := http.Get("http://" + h.HTTPAddr().String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatalf("GET /debug/pprof/goroutine: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine = %d %.80q, want 200 with a goroutine profile", resp.StatusCode, b)
	}
}
