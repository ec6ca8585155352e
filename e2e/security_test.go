package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/devenv"
	"github.com/blacktree/blacktree/internal/tlsutil"
	"github.com/blacktree/blacktree/internal/tlsutil/tlstest"
)

// refusedTimeout is the --connect-timeout of workers expected to be
// refused: they give up (exit 1) after it. Short, so that the refused
// workers' retries (127.0.0.1 for all of them) stay far below the hub's
// per-IP limit of 30 failures a minute.
const refusedTimeout = "6s"

// TestSecurityWorkerAuth: over the real hub, a worker with no token, a
// wrong token, or a token revoked by editing --worker-tokens + SIGHUP
// cannot register and gets no job; valid ones (including a token added by
// the reload) can. A worker connected before the reload keeps its stream
// when its token is still valid; the reload closes the session of a worker
// whose token it revoked, and that worker is refused when it reconnects.
func TestSecurityWorkerAuth(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	tokA, tokB, tokC := "tok-alpha-"+randomHex(12), "tok-beta-"+randomHex(12), "tok-gamma-"+randomHex(12)
	writeFile(t, e.tokensFile, "alpha:"+tokA+"\nbeta:"+tokB+"\n")
	tokenFile := func(name, tok string) string {
		p := filepath.Join(e.dir, "token-"+name)
		writeFile(t, p, tok+"\n")
		return p
	}
	h := e.startHub("--log-level", "debug")
	admin, actx := e.adminClient(h.GRPCAddr, nil)
	noop := []string{"--executor", "noop", "--noop-delay", "300ms"}
	worker := func(name, tokFile string, hubAddr string, extra ...string) *cluster.Process {
		args := append([]string{"--hub", hubAddr, "--insecure"}, noop...)
		if tokFile != "" {
			args = append(args, "--token-file", tokFile)
		}
		return e.startWorkerRaw(name, append(args, extra...)...)
	}

	alpha := worker("alpha", tokenFile("alpha", tokA), h.GRPCAddr)
	beta := worker("beta", tokenFile("beta", tokB), h.GRPCAddr)
	waitLive(t, actx, admin, []string{"alpha", "beta"}, 30*time.Second)
	betaBefore := len(beta.Output())

	// Refused before any reload: no token, a wrong token.
	noToken := worker("notoken", "", h.GRPCAddr, "--connect-timeout", refusedTimeout)
	wrong := worker("wrong", tokenFile("wrong", "tok-wrong-"+randomHex(12)), h.GRPCAddr, "--connect-timeout", refusedTimeout)

	// Revoke beta, add gamma, SIGHUP.
	writeFile(t, e.tokensFile, "alpha:"+tokA+"\ngamma:"+tokC+"\n")
	if err := h.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP hub: %v", err)
	}
	waitOut(t, h.Process, "tokens reloaded: sessions_closed=1", 10*time.Second)
	// beta's session is closed by the reload; reconnecting, it is refused.
	refusedCtx, cancelRefused := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelRefused()
	if cluster.Poll(refusedCtx, 50*time.Millisecond, func() bool {
		return strings.Contains(beta.Output()[betaBefore:], "invalid worker token")
	}) != nil {
		t.Fatalf("beta after the reload: no refusal in its output:\n%s", tail(beta.Output(), 3000))
	}
	revoked := worker("revoked", tokenFile("revoked", tokB), h.GRPCAddr, "--connect-timeout", refusedTimeout)
	gamma := worker("gamma", tokenFile("gamma", tokC), h.GRPCAddr)
	// alpha survives the reload; gamma's new token works; beta is gone.
	live := waitLive(t, actx, admin, []string{"alpha", "gamma"}, 30*time.Second)

	refused := map[string]struct {
		p    *cluster.Process
		want string
	}{
		"notoken": {noToken, "code = Unauthenticated desc = missing credentials"},
		"wrong":   {wrong, "code = Unauthenticated desc = invalid worker token"},
		"revoked": {revoked, "code = Unauthenticated desc = invalid worker token"},
	}
	for name, r := range refused {
		waitOut(t, r.p, r.want, 20*time.Second)
		if strings.Contains(r.p.Output(), "registered") && strings.Contains(r.p.Output(), "hub_id=") {
			t.Errorf("%s: output shows a registration:\n%s", name, r.p.Output())
		}
	}

	// Jobs: more than the three live slots at once, so every free worker
	// is offered some. None may reach a refused worker.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jobs := ids("auth", 9)
	e.publish(ctx, jobs...)
	got, err := e.cp.WaitFor(ctx, jobs...)
	if err != nil {
		t.Fatalf("WaitFor() = %v", err)
	}
	ran := map[string]int{}
	byID := map[string]string{}
	for n, id := range live {
		byID[id] = n
	}
	for id, r := range got {
		if !r.GetSuccess() {
			t.Errorf("status %s = %v, want success", id, r)
		}
		ran[byID[r.GetWorkerId()]]++
	}
	for _, n := range []string{"alpha", "gamma"} {
		if ran[n] == 0 {
			t.Errorf("worker %s ran no job (ran %v), want every live worker to take jobs after the reload", n, ran)
		}
	}
	if ran[""] != 0 {
		t.Errorf("%d jobs ran on workers the hub does not list as live (ran %v)", ran[""], ran)
	}
	// The refused workers give up (exit 1, "no hub reachable") and never
	// saw a job.
	for name, r := range refused {
		if code := waitExit(t, r.p, 30*time.Second); code != 1 {
			t.Errorf("%s exit code = %d, want 1 (gave up: no hub accepted it)", name, code)
		}
		if !strings.Contains(r.p.Output(), "no hub reachable") {
			t.Errorf("%s output lacks %q:\n%s", name, "no hub reachable", tail(r.p.Output(), 2000))
		}
		for _, id := range jobs {
			if strings.Contains(r.p.Output(), id) {
				t.Errorf("refused worker %s saw job %s", name, id)
			}
		}
	}

	_ = beta.Stop(10 * time.Second) // stop its retries (each is a failure against the per-IP limit)

	hubOut := h.Output()
	if n := strings.Count(hubOut, "authentication failed"); n < 4 {
		t.Errorf("hub logged %d authentication failures, want at least 4 (no token, wrong, revoked, beta reconnecting)", n)
	}
	// Failures name the presented token by fingerprint only.
	if !strings.Contains(hubOut, "token=sha256:") {
		t.Errorf("hub's authentication failures carry no token fingerprint:\n%s", tail(hubOut, 3000))
	}
	for name, tok := range map[string]string{"beta": tokB, "alpha": tokA, "gamma": tokC} {
		for _, p := range []*cluster.Process{h.Process, alpha, beta, gamma, noToken, wrong, revoked} {
			if strings.Contains(p.Output(), tok) {
				t.Errorf("%s's worker token appears in the output of %s", name, p.Name)
			}
		}
	}
	record(t, "reload closed beta's session (token revoked; refused on reconnect); live after reload: alpha, gamma (new); refused+exit 1: no token, wrong, revoked; jobs ran %v",
		ran)
}

// TestSecurityTLS: TLS and mTLS over the real binaries, with certificates
// made by tlstest: a worker verifying the hub with --tls-ca runs a job; a
// plaintext worker and one that does not trust the hub's CA are refused
// with a clear message; under mTLS a worker with a client certificate runs
// a job, one without (or with one from another CA) is refused.
func TestSecurityTLS(t *testing.T) {
	certs := tlstest.Generate(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var figures []string

	// runsJob starts a worker, waits until it is live and has it run a job.
	// liveName is the name the hub gives it: the token's name, or the
	// client certificate's CN for a worker without a token.
	runsJob := func(e *env, h *hubProc, adminTLS *tlsConfig, name, liveName string, args ...string) {
		t.Helper()
		c, actx := e.adminClient(h.GRPCAddr, adminTLS.cfg(t))
		w := e.startWorkerRaw(name, append([]string{"--hub", h.GRPCAddr, "--executor", "noop"}, args...)...)
		start := time.Now()
		waitLive(t, actx, c, []string{liveName}, 30*time.Second)
		id := "tls-" + name
		e.publish(ctx, id)
		got, err := e.cp.WaitFor(ctx, id)
		if err != nil || !got[id].GetSuccess() {
			t.Fatalf("%s: job = %v, %v; want success\n%s", name, got[id], err, w.Output())
		}
		figures = append(figures, fmt.Sprintf("%s ok in %s", name, time.Since(start).Round(time.Millisecond)))
		_ = w.Stop(10 * time.Second)
		waitLive(t, actx, c, nil, 30*time.Second)
	}
	// refused starts a worker that must fail to connect, exit 1 and say
	// why in its output (one of want, and hint). want lists alternatives: under mTLS the worker's TLS 1.3
	// handshake completes on its side before the hub checks the
	// certificate, so an attempt reports either the hub's alert or the
	// broken pipe of its first write.
	refused := func(e *env, name string, want []string, hint string, args ...string) {
		t.Helper()
		w := e.startWorkerRaw(name, append([]string{"--token-file", e.tokenFile, "--executor", "noop",
			"--connect-timeout", "3s"}, args...)...)
		if code := waitExit(t, w, 30*time.Second); code != 1 {
			t.Errorf("%s: exit code %d, want 1", name, code)
		}
		out := w.Output()
		seen := ""
		for _, s := range want {
			if strings.Contains(out, s) {
				seen = s
				break
			}
		}
		if seen == "" || !strings.Contains(out, "no hub reachable") || strings.Contains(out, "hub_id=") {
			t.Errorf("%s: output lacks %q (or the give-up line, or shows a registration):\n%s", name, want, tail(out, 2000))
		}
		if !strings.Contains(out, hint) {
			t.Errorf("%s: output lacks the hint %q:\n%s", name, hint, tail(out, 2000))
		}
		figures = append(figures, fmt.Sprintf("%s refused (%q)", name, seen))
	}
	certRefused := []string{"tls: certificate required", "broken pipe"}
	const plainHint, certHint = "drop --insecure and pass --tls-ca", "pass --tls-cert and --tls-key"

	t.Run("TLS", func(t *testing.T) {
		e := newEnv(t, sharedAMQP)
		h := e.startHub("--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey)
		runsJob(e, h, &tlsConfig{ca: certs.CACert}, "tls-worker", "e2e-workers", "--token-file", e.tokenFile, "--tls-ca", certs.CACert)
		refused(e, "plaintext", []string{"error reading server preface"}, plainHint, "--hub", h.GRPCAddr, "--insecure")
		refused(e, "untrusted-hub", []string{"certificate signed by unknown authority"}, "no hub reachable", "--hub", h.GRPCAddr, "--tls-ca", certs.UntrustedCACert)
	})
	t.Run("mTLS", func(t *testing.T) {
		e := newEnv(t, sharedAMQP)
		h := e.startHub("--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey, "--tls-client-ca", certs.CACert)
		adminTLS := &tlsConfig{ca: certs.CACert, cert: certs.ClientCert, key: certs.ClientKey}
		runsJob(e, h, adminTLS, "mtls-worker", "e2e-workers", "--token-file", e.tokenFile,
			"--tls-ca", certs.CACert, "--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey)
		// No token: the verified certificate names the worker (its CN).
		runsJob(e, h, adminTLS, "cert-only", tlstest.ClientName,
			"--tls-ca", certs.CACert, "--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey)
		refused(e, "no-client-cert", certRefused, certHint, "--hub", h.GRPCAddr, "--tls-ca", certs.CACert)
		refused(e, "foreign-client-cert", certRefused, "no hub reachable", "--hub", h.GRPCAddr, "--tls-ca", certs.CACert,
			"--tls-cert", certs.UntrustedClientCert, "--tls-key", certs.UntrustedClientKey)
		refused(e, "plaintext-mtls", []string{"error reading server preface"}, plainHint, "--hub", h.GRPCAddr, "--insecure")
		// The admin API is behind the client certificate too.
		c, actx := e.adminClient(h.GRPCAddr, (&tlsConfig{ca: certs.CACert}).cfg(t))
		if _, err := c.ListWorkers(actx, &blacktreev1.ListWorkersRequest{}); err == nil {
			t.Errorf("ListWorkers without a client certificate succeeded, want it refused")
		}
	})
	record(t, "%s", strings.Join(figures, "; "))
}

type tlsConfig struct{ ca, cert, key string }

func (c *tlsConfig) cfg(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := tlsutil.ClientConfig(c.ca, c.cert, c.key, "")
	if err != nil {
		t.Fatalf("ClientConfig() = %v", err)
	}
	return cfg
}

// TestSecuritySentinelToken: one sentinel githubToken goes through every
// path a job can take over the real binaries — a docker build that
// succeeds (git server demanding the sentinel, registry), clones that fail
// (missing repository, refused token), builds that fail while echoing the
// sentinel (in a LABEL, base64-encoded, and in the name of a missing COPY
// source), and a worker killed mid-job (lost). Then every byte the system
// emitted — hub (JSON, trace) and worker (human and JSON, trace) output,
// every status body, /metrics, ListWorkers and ListJobs — is searched for
// the sentinel, raw, URL-escaped and base64.
func TestSecuritySentinelToken(t *testing.T) {
	if err := devenv.CheckGit(); err != nil {
		t.Fatalf("%v: run scripts/ensure-tools", err)
	}
	sentinel := "ghp_SENTINEL" + randomHex(16)
	b64 := base64.StdEncoding.EncodeToString
	git, err := devenv.StartGitServer(t.TempDir(), sentinel)
	if err != nil {
		t.Fatalf("StartGitServer() = %v", err)
	}
	t.Cleanup(func() { git.Close() })
	if err := git.CreateRepo("user/ok", "main", map[string]string{
		"Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n", "hello.txt": "hello\n",
	}); err != nil {
		t.Fatalf("CreateRepo() = %v", err)
	}
	if err := git.CreateRepo("user/leaky", "main", map[string]string{
		// The build output echoes each step (BuildKit names the COPY,
		// the classic builder every step); the engine's error for a
		// missing COPY source prints its path.
		// The COPY destination also carries hex, every-byte %xx and the
		// base64 of "u:<token>@" (the token at byte offset 2).
		"Dockerfile": "FROM scratch\nLABEL leak=" + sentinel + " leak64=" + b64([]byte(sentinel)) + "\nCOPY " + sentinel + ".txt /" + b64([]byte(sentinel)) +
			"/" + strings.ToUpper(hex.EncodeToString([]byte(sentinel))) + "/" + percentEveryByte(sentinel, "%%%02x") + "/" + b64([]byte("u:"+sentinel+"@")) + "/x\n",
		"present": "x\n",
	}); err != nil {
		t.Fatalf("CreateRepo() = %v", err)
	}
	reg, err := devenv.StartRegistry()
	if err != nil {
		t.Fatalf("StartRegistry() = %v", err)
	}
	t.Cleanup(func() { reg.Close() })

	for _, hubJSON := range []bool{true, false} {
		t.Run(map[bool]string{true: "hub-json", false: "hub-human"}[hubJSON], func(t *testing.T) {
			e := newEnv(t, sharedAMQP)
			const grace = 3 * time.Second
			// The hub logs in one format, the docker worker in the other.
			hubFmt, workerFmt := []string{"--log-level", "trace"}, []string{"--log-level", "trace"}
			if hubJSON {
				hubFmt = append(hubFmt, "--log-json")
			} else {
				workerFmt = append(workerFmt, "--log-json")
			}
			h := e.startHub(append(hubFmt, "--lost-worker-grace", grace.String())...)
			dw := e.startWorker("docker", []string{h.GRPCAddr}, append(workerFmt, "--executor", "docker", "--git-base-url", git.URL,
				"--registry", reg.Host, "--labels", "role=docker")...)
			victim := e.startWorker("victim", []string{h.GRPCAddr}, append(hubFmt, "--executor", "noop", "--noop-delay", "2m",
				"--labels", "role=victim")...)
			e.waitWorkers(h, 2, 30*time.Second)
			admin, actx := e.admin(h)

			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			mk := func(id, repo, token, role string) *blacktreev1.JobRequest {
				r := job(id)
				r.RepoUrl, r.GithubToken, r.WorkerLabels = repo, token, map[string]string{"role": role}
				return r
			}
			cases := []struct {
				req       *blacktreev1.JobRequest
				ok        bool
				errHas    string
				logsHas   string
				stageWant blacktreev1.JobStage
			}{
				{req: mk("sentinel-ok", "user/ok", sentinel, "docker"), ok: true},
				{req: mk("sentinel-clone-missing", "user/nothere", sentinel, "docker"), errHas: "clone: repository user/nothere not found",
					stageWant: blacktreev1.JobStage_JOB_STAGE_CLONE},
				{req: mk("sentinel-clone-refused", "user/ok", sentinel+"X", "docker"), errHas: "clone: authentication failed",
					stageWant: blacktreev1.JobStage_JOB_STAGE_CLONE},
				{req: mk("sentinel-build", "user/leaky", sentinel, "docker"), errHas: "build: Dockerfile line 3",
					logsHas: "COPY [REDACTED].txt /[REDACTED]/[REDACTED]/[REDACTED]/", stageWant: blacktreev1.JobStage_JOB_STAGE_BUILD},
			}
			lost := mk("sentinel-lost", "user/ok", sentinel, "victim")
			start := time.Now()
			if err := e.cp.Publish(ctx, lost); err != nil {
				t.Fatalf("Publish() = %v", err)
			}
			waitAccepted(t, e, h, victim, lost.JobId)
			var ids []string
			for _, c := range cases {
				if err := e.cp.Publish(ctx, c.req); err != nil {
					t.Fatalf("Publish() = %v", err)
				}
				ids = append(ids, c.req.JobId)
			}

			// The admin view while jobs are in flight, then the lost worker.
			scan := newSentinelScan(sentinel)
			// The scanner itself finds every encoding it claims to.
			probes := []string{
				sentinel,
				b64([]byte("x-access-token:" + sentinel)),
				base64.RawURLEncoding.EncodeToString([]byte(sentinel)),
				b64([]byte("u:" + sentinel + "@")),  // offset 2
				b64([]byte("ci:" + sentinel + "@")), // offset 0, neighbour after
				b64([]byte("a" + sentinel + "@")),   // offset 1
				strings.ToUpper(hex.EncodeToString([]byte(sentinel))),
				hex.EncodeToString([]byte(sentinel)),
				percentEveryByte(sentinel, "%%%02x"),
				percentEveryByte(sentinel, "%%%02X"),
				unicodeEveryRune(sentinel, `\u%04x`),
				unicodeEveryRune(sentinel, `\u%04X`),
			}
			for _, probe := range probes {
				s := newSentinelScan(sentinel)
				if s.scan("probe", "a "+probe+" b"); s.places() == 0 {
					t.Fatalf("sentinelScan misses %q", probe)
				}
			}
			marshal := protojson.MarshalOptions{EmitUnpopulated: true}
			adminDump := func(when string) {
				ws, err := admin.ListWorkers(actx, &blacktreev1.ListWorkersRequest{})
				if err != nil {
					t.Fatalf("ListWorkers() = %v", err)
				}
				js, err := admin.ListJobs(actx, &blacktreev1.ListJobsRequest{})
				if err != nil {
					t.Fatalf("ListJobs() = %v", err)
				}
				scan.scan("ListWorkers "+when, marshal.Format(ws))
				scan.scan("ListJobs "+when, marshal.Format(js))
				if when == "in flight" && len(js.GetJobs()) == 0 {
					t.Errorf("ListJobs in flight = empty, want the running jobs")
				}
			}
			adminDump("in flight")
			victim.Kill()
			waitOut(t, h.Process, "worker session ended", 20*time.Second)
			adminDump("orphaned")

			got, err := e.cp.WaitFor(ctx, append(ids, lost.JobId)...)
			if err != nil {
				t.Fatalf("WaitFor() = %v", err)
			}
			for _, c := range cases {
				r := got[c.req.JobId]
				t.Logf("%s: success=%v stage=%v error=%q", c.req.JobId, r.GetSuccess(), r.GetFailedStage(), r.GetError())
				switch {
				case c.ok && (!r.GetSuccess() || !strings.HasPrefix(r.GetImageUrl(), reg.Host+"/myapp")):
					t.Errorf("%s = %v, want success pushed under %s", c.req.JobId, r, reg.Host)
				case !c.ok && (r.GetSuccess() || !strings.HasPrefix(r.GetError(), c.errHas) || r.GetFailedStage() != c.stageWant):
					t.Errorf("%s = %v, want a failure at %v starting %q", c.req.JobId, r, c.stageWant, c.errHas)
				case c.logsHas != "" && !strings.Contains(r.GetLogs(), c.logsHas):
					t.Errorf("%s logs lack %q:\n%s", c.req.JobId, c.logsHas, r.GetLogs())
				}
			}
			if r := got[lost.JobId]; r.GetSuccess() || !strings.Contains(r.GetError(), "lost") {
				t.Errorf("%s = %v, want reported lost", lost.JobId, r)
			}
			elapsed := time.Since(start)
			adminDump("after")

			metrics := metricsText(t, h)
			if !strings.Contains(metrics, "blacktree_") {
				t.Errorf("/metrics lacks blacktree_ series:\n%s", metrics)
			}
			// Stop the worker and hub first so their shutdown lines are scanned too.
			_ = dw.Stop(20 * time.Second)
			_ = h.Stop(20 * time.Second)
			scan.scan("hub output", h.Output())
			scan.scan("docker worker output", dw.Output())
			scan.scan("victim worker output", victim.Output())
			scan.scan("/metrics", metrics)
			for i, b := range e.cp.Bodies() {
				scan.scan(fmt.Sprintf("status body %d", i), string(b))
			}
			if n := scan.places(); n != 0 {
				t.Errorf("sentinel found in %d places:\n%s", n, strings.Join(scan.found, "\n"))
			}
			// The scan must have looked at real traffic: the build echoed the
			// sentinel (scrubbed) and git saw it.
			if !strings.Contains(dw.Output(), "[REDACTED]") {
				t.Errorf("docker worker output shows no [REDACTED]: the leaky build did not echo the sentinel")
			}
			format := map[bool]string{true: "json", false: "human"}
			record(t, "sentinel found: %d places across %d bytes in %d texts (hub %s, docker worker %s, trace; 5 jobs: ok, 2 clone failures, leaky build, lost; %s)",
				scan.places(), scan.bytes, scan.sources, format[hubJSON], format[!hubJSON], elapsed.Round(time.Millisecond))

		})
	}
}
