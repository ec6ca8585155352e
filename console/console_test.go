package console

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	adminToken  = "admin-secret-0123456789"
	viewerToken = "viewer-secret-0123456789"
)

// fakeAuth knows two tokens; rotate makes the admin token another one.
type fakeAuth struct {
	mu    sync.Mutex
	admin string
	fails int
}

func (a *fakeAuth) ConsoleEnabled() bool { return true }

func (a *fakeAuth) ConsoleLogin(_, secret string) (string, auth.ConsoleDigest, error) {
	d := auth.ConsoleDigest(sha256.Sum256([]byte(secret)))
	if role := a.ConsoleRole(d); role != "" {
		return role, d, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fails++
	if a.fails > 3 {
		return "", auth.ConsoleDigest{}, auth.ErrConsoleLimited
	}
	return "", auth.ConsoleDigest{}, auth.ErrConsoleDenied
}

func (a *fakeAuth) ConsoleRole(d auth.ConsoleDigest) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	admin, viewer := sha256.Sum256([]byte(a.admin)), sha256.Sum256([]byte(viewerToken))
	if d == admin {
		return auth.ConsoleAdmin
	}
	if d == viewer {
		return auth.ConsoleViewer
	}
	return ""
}

func (a *fakeAuth) rotate() { a.mu.Lock(); a.admin = "rotated-0123456789"; a.mu.Unlock() }

// fakeAdmin is an AdminService with two workers and three jobs; it records
// the drains and cancels it is asked for.
type fakeAdmin struct {
	blacktreev1.UnimplementedAdminServiceServer
	mu      sync.Mutex
	drained []string
	cancels []string
}

func (f *fakeAdmin) ListWorkers(context.Context, *blacktreev1.ListWorkersRequest) (*blacktreev1.ListWorkersResponse, error) {
	now := timestamppb.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	state := blacktreev1.WorkerState_WORKER_STATE_BUSY
	if len(f.drained) > 0 {
		state = blacktreev1.WorkerState_WORKER_STATE_DRAINING
	}
	return &blacktreev1.ListWorkersResponse{Workers: []*blacktreev1.WorkerInfo{{
		WorkerId: "w-1", Name: "builder-1", State: state, Slots: 2,
		Labels: map[string]string{"arch": "amd64"}, RunningJobIds: []string{"job-1"},
		ConnectedSince: now, LastHeartbeat: now, Version: "1.2.3", ProtocolVersion: 1,
		Cache: &blacktreev1.CacheSummary{BuildKeys: []string{"k"}, SizeBytes: 3 << 20},
	}, {
		WorkerId: "w-2", Name: "builder-2", State: blacktreev1.WorkerState_WORKER_STATE_FREE, Slots: 1,
		Labels: map[string]string{"arch": "arm64"}, ConnectedSince: now, LastHeartbeat: now,
	}}}, nil
}

func (f *fakeAdmin) ListJobs(context.Context, *blacktreev1.ListJobsRequest) (*blacktreev1.ListJobsResponse, error) {
	return &blacktreev1.ListJobsResponse{Jobs: []*blacktreev1.JobInfo{{
		JobId: "job-1", State: blacktreev1.JobState_JOB_STATE_RUNNING, WorkerId: "w-1",
		RepoUrl: "acme/api", Branch: "main", ImageName: "acme/api:1",
		ReceivedAt: timestamppb.Now(), AcceptedAt: timestamppb.Now(),
	}, {
		JobId: "job-building", State: blacktreev1.JobState_JOB_STATE_RUNNING, Stage: blacktreev1.JobStage_JOB_STAGE_BUILD,
		WorkerId: "w-1", RepoUrl: "acme/web", ImageName: "acme/web:2",
		ReceivedAt: timestamppb.Now(), AcceptedAt: timestamppb.Now(),
	}, {
		JobId: "job-lost", State: blacktreev1.JobState_JOB_STATE_ORPHANED, Stage: blacktreev1.JobStage_JOB_STAGE_PUSH,
		RepoUrl: "acme/db", ImageName: "acme/db:3", ReceivedAt: timestamppb.Now(),
	}}}, nil
}

func (f *fakeAdmin) DrainWorker(_ context.Context, req *blacktreev1.DrainWorkerRequest) (*blacktreev1.DrainWorkerResponse, error) {
	if req.GetWorkerId() != "w-1" && req.GetWorkerId() != "w-2" {
		return nil, status.Error(codes.NotFound, "no worker")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drained = append(f.drained, req.GetWorkerId())
	return &blacktreev1.DrainWorkerResponse{Worker: &blacktreev1.WorkerInfo{WorkerId: req.GetWorkerId()}}, nil
}

func (f *fakeAdmin) CancelJob(_ context.Context, req *blacktreev1.CancelJobRequest) (*blacktreev1.CancelJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, req.GetJobId())
	return &blacktreev1.CancelJobResponse{Outcome: blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_SENT_TO_WORKER}, nil
}

// fakeLogs holds one job's output; add appends and wakes readers.
type fakeLogs struct {
	mu      sync.Mutex
	chunks  []string
	end     *LogEnd
	changed chan struct{}
}

func newFakeLogs() *fakeLogs { return &fakeLogs{changed: make(chan struct{})} }

func (l *fakeLogs) add(chunk string, end *LogEnd) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if chunk != "" {
		l.chunks = append(l.chunks, chunk)
	}
	l.end = end
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *fakeLogs) LogSince(jobID string, cursor uint64) (LogPage, bool) {
	if jobID != "job-1" {
		return LogPage{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p := LogPage{End: l.end, Changed: l.changed, Next: uint64(len(l.chunks))}
	if cursor < uint64(len(l.chunks)) {
		p.Chunks = append(p.Chunks, l.chunks[cursor:]...)
	}
	return p, true
}

type fixture struct {
	t     *testing.T
	srv   *httptest.Server
	c     *Console
	admin *fakeAdmin
	auth  *fakeAuth
	logs  *fakeLogs
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, admin: &fakeAdmin{}, auth: &fakeAuth{admin: adminToken}, logs: newFakeLogs()}
	c, err := New(Config{
		Admin: f.admin,
		Auth:  f.auth,
		Logs:  f.logs,
		HubID: "hub-test",
		Queues: func(context.Context) ([]QueueDepth, error) {
			return []QueueDepth{{Name: "status.queue", Ready: 3, Unacked: -1}, {Name: "execute.queue", Ready: 7, Unacked: 2}}, nil
		},
		SampleEvery: 10 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	f.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	f.srv = httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		_ = c.Shutdown(context.Background())
		f.srv.Close()
		cancel()
		<-done
	})
	return f
}

// client is a browser: a cookie jar, no automatic redirects.
func (f *fixture) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (f *fixture) login(token string) (*http.Client, *http.Response) {
	f.t.Helper()
	cl := f.client()
	resp, err := cl.PostForm(f.srv.URL+"/ui/login", url.Values{"token": {token}})
	if err != nil {
		f.t.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	return cl, resp
}

func get(t *testing.T, cl *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := cl.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var formKeyRE = regexp.MustCompile(`name="form_key" value="([^"]+)"`)

func TestWrongTokenGetsNoData(t *testing.T) {
	f := newFixture(t)
	cl, resp := f.login("not-the-token")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with a wrong token: %d, want 401", resp.StatusCode)
	}
	if len(cl.Jar.Cookies(mustURL(t, f.srv.URL+"/ui/"))) != 0 {
		t.Fatalf("a wrong token got a cookie")
	}
	for _, path := range []string{"/ui/", "/ui/jobs", "/ui/jobs/job-1", "/ui/queues"} {
		code, body := get(t, cl, f.srv.URL+path)
		if code != http.StatusSeeOther || strings.Contains(body, "builder-1") || strings.Contains(body, "job-1") {
			t.Errorf("GET %s without a session: %d %q, want a redirect to the login page and no data", path, code, body)
		}
	}
	for _, path := range []string{"/ui/?fragment=1", "/ui/jobs/job-1/log"} {
		if code, body := get(t, cl, f.srv.URL+path); code != http.StatusUnauthorized || strings.Contains(body, "builder-1") {
			t.Errorf("GET %s without a session: %d, want 401", path, code)
		}
	}
	// A forged cookie is no better.
	cl.Jar.SetCookies(mustURL(t, f.srv.URL+"/ui/"), []*http.Cookie{{Name: cookieName, Value: "YQ.AAAA", Path: "/ui/"}})
	if code, _ := get(t, cl, f.srv.URL+"/ui/?fragment=1"); code != http.StatusUnauthorized {
		t.Errorf("forged cookie: %d, want 401", code)
	}
}

func TestLoginRateLimited(t *testing.T) {
	f := newFixture(t)
	var last int
	for range 5 {
		_, resp := f.login("wrong")
		last = resp.StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("fifth failed login: %d, want 429", last)
	}
}

func TestCookieHoldsNoToken(t *testing.T) {
	f := newFixture(t)
	cl, resp := f.login(adminToken)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d, want 303", resp.StatusCode)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" {
		t.Fatalf("session cookie = %+v, want HttpOnly, SameSite=Strict, Path=/ui/", ck)
	}
	if strings.Contains(ck.Value, adminToken) {
		t.Fatalf("the cookie carries the token")
	}
	_, body := get(t, cl, f.srv.URL+"/ui/")
	if strings.Contains(body, adminToken) {
		t.Fatalf("the page carries the token")
	}
	// Rotating the token ends the session.
	f.auth.rotate()
	if code, _ := get(t, cl, f.srv.URL+"/ui/?fragment=1"); code != http.StatusUnauthorized {
		t.Fatalf("after the admin token changed: %d, want 401", code)
	}
}

func TestFleetFilterAndFragment(t *testing.T) {
	f := newFixture(t)
	cl, _ := f.login(viewerToken)
	_, body := get(t, cl, f.srv.URL+"/ui/")
	for _, want := range []string{"builder-1", "builder-2", "2 workers", "1 busy", "1 free", "3.0 MiB", "read-only"} {
		if !strings.Contains(body, want) {
			t.Errorf("fleet page lacks %q", want)
		}
	}
	if strings.Contains(body, "/drain") {
		t.Errorf("a read-only session sees a drain button")
	}
	_, body = get(t, cl, f.srv.URL+"/ui/?fragment=1&label=arch%3Darm64")
	if strings.Contains(body, "<html") || !strings.Contains(body, "builder-2") || strings.Contains(body, "builder-1") {
		t.Errorf("fragment filtered by arch=arm64: want only builder-2 and no page around it:\n%s", body)
	}
	_, body = get(t, cl, f.srv.URL+"/ui/?fragment=1&state=busy")
	if !strings.Contains(body, "builder-1") || strings.Contains(body, "builder-2") {
		t.Errorf("filtered by state busy: want only builder-1")
	}
	_, body = get(t, cl, f.srv.URL+"/ui/?label=nonsense")
	if !strings.Contains(body, "is not key=value") {
		t.Errorf("a bad label filter is not explained")
	}
}

// The Stage column shows the stage a running job's worker reported, and
// the hub's words for where the job is otherwise.
func TestJobsPageShowsStage(t *testing.T) {
	f := newFixture(t)
	cl, _ := f.login(viewerToken)
	_, body := get(t, cl, f.srv.URL+"/ui/jobs")
	for job, want := range map[string]string{
		"job-1":        "running",     // running, no stage reported
		"job-building": "build",       // running in the build stage
		"job-lost":     "worker lost", // a stage, but not running
	} {
		_, row, _ := strings.Cut(body, `<tr data-job="`+job+`">`)
		row, _, _ = strings.Cut(row, "</tr>")
		if cell := `data-label="Stage">` + want + `</td>`; !strings.Contains(row, cell) {
			t.Errorf("jobs page row of %s lacks %q:\n%s", job, cell, row)
		}
	}
	_, body = get(t, cl, f.srv.URL+"/ui/jobs/job-building")
	if want := `id="job-state">build</dd>`; !strings.Contains(body, want) {
		t.Errorf("job page of job-building lacks %q", want)
	}
}

func TestViewerCannotAct(t *testing.T) {
	f := newFixture(t)
	cl, _ := f.login(viewerToken)
	_, body := get(t, cl, f.srv.URL+"/ui/")
	key := formKeyRE.FindStringSubmatch(body)[1]
	resp, err := cl.PostForm(f.srv.URL+"/ui/workers/w-1/drain", url.Values{"form_key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(f.admin.drained) != 0 {
		t.Fatalf("viewer drain: %d, drained %v; want 403 and nothing drained", resp.StatusCode, f.admin.drained)
	}
}

func TestAdminDrainAndCancel(t *testing.T) {
	f := newFixture(t)
	cl, _ := f.login(adminToken)
	_, body := get(t, cl, f.srv.URL+"/ui/")
	key := formKeyRE.FindStringSubmatch(body)[1]

	// Without the form key (a page of another site) nothing happens.
	resp, err := cl.PostForm(f.srv.URL+"/ui/workers/w-1/drain", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(f.admin.drained) != 0 {
		t.Fatalf("drain without the form key: %d, drained %v; want 403 and nothing", resp.StatusCode, f.admin.drained)
	}

	// A plain form: redirect back, the outcome shown once.
	resp, err = cl.PostForm(f.srv.URL+"/ui/workers/w-1/drain", url.Values{"form_key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(f.admin.drained) != 1 {
		t.Fatalf("drain: %d, drained %v", resp.StatusCode, f.admin.drained)
	}
	_, body = get(t, cl, f.srv.URL+"/ui/")
	if !strings.Contains(body, "Worker w-1 is draining") || !strings.Contains(body, `data-state="draining"`) {
		t.Errorf("after the drain the page lacks its notice or the new state")
	}
	if _, body = get(t, cl, f.srv.URL+"/ui/"); strings.Contains(body, "Worker w-1 is draining") {
		t.Errorf("the notice is shown twice")
	}

	// fetch: the outcome as text.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/ui/jobs/job-1/cancel", strings.NewReader(url.Values{"form_key": {key}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Requested-With", "fetch")
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "told to stop") || len(f.admin.cancels) != 1 {
		t.Fatalf("cancel: %d %q, cancels %v", resp.StatusCode, b, f.admin.cancels)
	}
}

func TestJobLogStream(t *testing.T) {
	f := newFixture(t)
	cl, _ := f.login(viewerToken)
	f.logs.add("line one\n", nil)
	_, body := get(t, cl, f.srv.URL+"/ui/jobs/job-1")
	if !strings.Contains(body, "line one") || !strings.Contains(body, `data-cursor="1"`) {
		t.Fatalf("job page lacks the output so far or its cursor")
	}
	if code, _ := get(t, cl, f.srv.URL+"/ui/jobs/no-such-job"); code != http.StatusNotFound {
		t.Errorf("unknown job page: %d, want 404", code)
	}

	resp, err := cl.Get(f.srv.URL + "/ui/jobs/job-1/log?cursor=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.logs.add("line <two>\n", nil)
		f.logs.add("", &LogEnd{Finished: true, Success: false, Stage: "build", Error: "exit 1"})
	}()
	b, err := io.ReadAll(resp.Body) // the stream ends with the job
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if strings.Contains(got, "line one") {
		t.Errorf("the stream repeated output before its cursor")
	}
	for _, want := range []string{"event: chunk\nid: 2\ndata: \"line \\u003ctwo\\u003e\\n\"", "event: end\ndata: {", `"stage":"build"`} {
		if !strings.Contains(got, want) {
			t.Errorf("stream lacks %q:\n%s", want, got)
		}
	}
}

func TestQueuesSparkline(t *testing.T) {
	f := newFixture(t)
	cl, _ := f.login(viewerToken)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := get(t, cl, f.srv.URL+"/ui/queues?fragment=1")
		if strings.Contains(body, "<polyline") {
			if strings.Index(body, "execute.queue") > strings.Index(body, "status.queue") {
				t.Errorf("the consumed queue is not listed first")
			}
			if !strings.Contains(body, "(consumed)") || !strings.Contains(body, `aria-label="ready messages`) {
				t.Errorf("queues page lacks the consumed mark or the sparkline's text")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sparkline after 5 s:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	f := newFixture(t)
	cl, _ := f.login(viewerToken)
	resp, err := cl.Get(f.srv.URL + "/ui/jobs/job-1/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	_ = f.c.Shutdown(context.Background())
	_ = f.c.Shutdown(context.Background()) // idempotent
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("an open log stream outlived Shutdown")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
