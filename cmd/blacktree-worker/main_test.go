package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/syncbuf"
	"github.com/blacktree/blacktree/internal/tlsutil"
	"github.com/blacktree/blacktree/internal/tlsutil/tlstest"
	"github.com/blacktree/blacktree/workeragent"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

const wait = 20 * time.Second

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "unknown flag",
			args: []string{"--bogus"},
			want: "flag provided but not defined",
		},
		{
			name: "bad slots",
			args: []string{"--insecure", "--executor", "noop", "--slots", "0"},
			want: "--slots",
		},
		{
			name: "negative persist delay",
			args: []string{"--insecure", "--executor", "noop", "--persist-results-after", "-1s"},
			want: "--persist-results-after",
		},
		{
			name: "negative log flush interval",
			args: []string{"--insecure", "--executor", "noop", "--log-flush-interval", "-1s"},
			want: "--log-flush-interval",
		},
		{
			name: "negative noop log lines",
			args: []string{"--insecure", "--executor", "noop", "--noop-log-lines", "-1"},
			want: "--noop-log-lines",
		},
		{
			name: "bad labels",
			args: []string{"--insecure", "--executor", "noop", "--labels", "novalue"},
			want: "--labels",
		},
		{
			name: "bad log level",
			args: []string{"--log-level", "loud"},
			want: "--log-level",
		},
		{
			name: "unknown executor",
			args: []string{"--insecure", "--executor", "magic"},
			want: "--executor",
		},
		{
			name: "insecure with tls",
			args: []string{"--insecure", "--tls-ca", "ca.pem", "--executor", "noop"},
			want: "--insecure cannot",
		},
		{
			name: "missing token file",
			args: []string{"--insecure", "--executor", "noop", "--token-file", "/nonexistent/token"},
			want: "--token-file",
		},
		{
			name: "stray argument",
			args: []string{"extra"},
			want: "unexpected argument",
		},
		{
			name: "bad cache size",
			args: []string{"--insecure", "--executor", "noop", "--cache-max-size", "lots"},
			want: "--cache-max-size",
		},
		{
			name: "docker executor with no push scope",
			args: []string{"--insecure"},
			want: "no push scope: pass --registry or --allowed-push-prefixes (or --allow-any-push",
		},
		{
			name: "bad push prefix",
			args: []string{"--insecure", "--allowed-push-prefixes", "reg.example.com/Team"},
			want: `push prefix "reg.example.com/Team"`,
		},
		{
			name: "unknown builder",
			args: []string{"--insecure", "--builder", "kaniko"},
			want: `unknown builder "kaniko"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tt.args, &stderr); got != exitUsage {
				t.Errorf("run(%q) = %d, want %d", tt.args, got, exitUsage)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("run(%q) stderr = %q, want it to mention %q", tt.args, stderr.String(), tt.want)
			}
		})
	}
}

func TestCacheMaxBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{in: "20GiB", want: 20 << 30},
		{in: "512m", want: 512 << 20},
		{in: "0", want: -1}, // never prune
	}
	for _, tt := range tests {
		if got, err := cacheMaxBytes(tt.in); err != nil || got != tt.want {
			t.Errorf("cacheMaxBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	if _, err := cacheMaxBytes("-1GiB"); err == nil {
		t.Errorf("cacheMaxBytes(-1GiB) = nil error, want a refusal")
	}
}

func TestHelp(t *testing.T) {
	var stderr bytes.Buffer
	if got := run([]string{"--help"}, &stderr); got != exitOK {
		t.Errorf("run(--help) = %d, want 0", got)
	}
	for _, want := range []string{"--hub", "BLACKTREE_HUB", "--token-file", "BLACKTREE_WORKER_TOKEN", "Examples:", "--insecure", "--persist-results-after", "BLACKTREE_PERSIST_RESULTS_AFTER", "--log-flush-interval", "BLACKTREE_LOG_FLUSH_INTERVAL", "--log-write-interval", "BLACKTREE_LOG_WRITE_INTERVAL", "--builder", "--cache-max-size", "--allowed-push-prefixes", "--allow-any-push"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help output does not mention %q", want)
		}
	}
}

func TestEnvFallback(t *testing.T) {
	t.Setenv("BLACKTREE_SLOTS", "4")
	t.Setenv("BLACKTREE_HUB", "a:1,b:2")
	o, err := parse([]string{"--slots", "3"}, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parse() error = %v", err)
	}
	if o.slots != 3 || o.hubs != "a:1,b:2" {
		t.Errorf("parse() = slots %d hubs %q, want 3 (flag wins) and a:1,b:2 (env)", o.slots, o.hubs)
	}
}

// noopConfig is the agent config setup builds from args (plaintext, noop
// executor), with env set to val unless val is empty.
func noopConfig(t *testing.T, env, val string, args []string) workeragent.Config {
	t.Helper()
	if val != "" {
		t.Setenv(env, val)
	}
	o, err := parse(args, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parse(%q) error = %v", args, err)
	}
	o.insecure, o.executor = true, "noop"
	cfg, _, _, err := setup(o, io.Discard)
	if err != nil {
		t.Fatalf("setup() error = %v", err)
	}
	return cfg
}

func TestPersistResultsAfterFlag(t *testing.T) {
	tests := []struct {
		name string
		env  string // BLACKTREE_PERSIST_RESULTS_AFTER; "" leaves it unset
		args []string
		want time.Duration
		sync bool // PersistResultsBeforeSend
	}{
		{name: "default", want: workeragent.DefaultPersistResultsAfter},
		{name: "flag zero", args: []string{"--persist-results-after", "0"}, want: 0, sync: true},
		{name: "env", env: "1s", want: time.Second},
		{name: "flag wins over env", env: "1s", args: []string{"--persist-results-after", "50ms"}, want: 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := noopConfig(t, "BLACKTREE_PERSIST_RESULTS_AFTER", tt.env, tt.args)
			if got := cfg.PersistResultsAfter; got != tt.want {
				t.Errorf("setup() PersistResultsAfter = %s, want %s", got, tt.want)
			}
			if got := cfg.PersistResultsBeforeSend; got != tt.sync {
				t.Errorf("setup() PersistResultsBeforeSend = %v, want %v", got, tt.sync)
			}
		})
	}
}

func TestLogFlushIntervalFlag(t *testing.T) {
	tests := []struct {
		name string
		env  string // BLACKTREE_LOG_FLUSH_INTERVAL; "" leaves it unset
		args []string
		want time.Duration // Config.LogFlushInterval
	}{
		{name: "default", want: workeragent.DefaultLogFlushInterval},
		{name: "zero sends every write", args: []string{"--log-flush-interval", "0"}, want: -1},
		{name: "flag", args: []string{"--log-flush-interval", "1s"}, want: time.Second},
		{name: "env", env: "250ms", want: 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := noopConfig(t, "BLACKTREE_LOG_FLUSH_INTERVAL", tt.env, tt.args)
			if got := cfg.LogFlushInterval; got != tt.want {
				t.Errorf("setup() LogFlushInterval = %s, want %s", got, tt.want)
			}
		})
	}
}

// buildWorker builds this command into a temporary directory.
func buildWorker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "blacktree-worker")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// exitCode waits for the process and returns its exit code.
func exitCode(t *testing.T, cmd *exec.Cmd, stderr *syncbuf.Buffer) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.ExitCode()
		default:
			t.Fatalf("wait: %v", err)
		}
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("worker did not exit within %s; stderr:\n%s", wait, stderr.String())
	}
	return -1
}

func TestBinarySIGTERM(t *testing.T) {
	bin := buildWorker(t)
	tests := []struct {
		name      string
		delay     string
		signals   int
		wantOK    bool
		wantError string
		wantExit  int
		logWrite  string // the deprecated --log-write-interval; "" leaves it out
	}{
		{name: "one SIGTERM drains and exits 0", delay: "1s", signals: 1, wantOK: true, wantExit: 0},
		{name: "second SIGTERM aborts and exits 1", delay: "1h", signals: 2, wantError: "cancelled: the worker is stopping", wantExit: 1},
		// Still accepted, ignored with a warning: old unit files keep working.
		{name: "deprecated log write interval", delay: "1s", signals: 1, wantOK: true, wantExit: 0, logWrite: "1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := fakehub.Start(t, fakehub.Options{Token: "bin-token", HeartbeatInterval: time.Hour})
			stderr := &syncbuf.Buffer{}
			cmd := exec.Command(bin, "--hub", hub.Addr, "--insecure", "--executor", "noop", "--noop-delay", tt.delay,
				"--state-dir", t.TempDir(), "--name", "bin-test", "--log-level", "debug")
			if tt.logWrite != "" {
				cmd.Args = append(cmd.Args, "--log-write-interval", tt.logWrite)
			}
			cmd.Env = append(os.Environ(), "BLACKTREE_WORKER_TOKEN=bin-token")
			cmd.Stderr = stderr
			if err := cmd.Start(); err != nil {
				t.Fatalf("start worker: %v", err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })

			s := hub.NextStream(t, wait)
			if got := s.Register.GetName(); got != "bin-test" {
				t.Errorf("Register.name = %q, want bin-test", got)
			}
			s.Send(t, fakehub.RunJob(&blacktreev1.JobRequest{JobId: "bin-job", RepoUrl: "user/repo", ImageName: "app:1", GithubToken: "tok-xyz"}))
			s.WaitFor(t, wait, "JobAccepted", fakehub.IsAccepted("bin-job"))
			for i := 0; i < tt.signals; i++ {
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatalf("signal: %v", err)
				}
				if i == 0 {
					s.WaitFor(t, wait, "draining heartbeat", func(m *blacktreev1.WorkerMessage) bool { return m.GetHeartbeat().GetDraining() })
				}
			}
			res := s.WaitFor(t, wait, "JobResult", fakehub.IsResult("bin-job")).GetJobResult().GetResponse()
			if res.GetSuccess() != tt.wantOK || !strings.HasPrefix(res.GetError(), tt.wantError) {
				t.Errorf("JobResult = %v, want success %v, error %q", res, tt.wantOK, tt.wantError)
			}
			if tt.wantOK {
				s.Send(t, fakehub.Ack("bin-job"))
			}
			if got := exitCode(t, cmd, stderr); got != tt.wantExit {
				t.Errorf("worker exit code = %d, want %d; stderr:\n%s", got, tt.wantExit, stderr.String())
			}
			for _, want := range []string{"worker agent starting", "job accepted", "worker agent stopped"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("worker stderr lacks %q after exit; stderr:\n%s", want, stderr.String())
				}
			}
			if warned := strings.Contains(stderr.String(), "--log-write-interval is deprecated"); warned != (tt.logWrite != "") {
				t.Errorf("worker stderr has the deprecation warning: %v, want %v; stderr:\n%s", warned, tt.logWrite != "", stderr.String())
			}
			for _, secret := range []string{"bin-token", "tok-xyz"} {
				if strings.Contains(stderr.String(), secret) {
					t.Errorf("worker log contains the secret %q", secret)
				}
			}
		})
	}
}

func TestBinaryTLS(t *testing.T) {
	bin := buildWorker(t)
	pki := tlstest.Generate(t, t.TempDir())
	srvTLS, err := tlsutil.ServerConfig(pki.ServerCert, pki.ServerKey, pki.CACert)
	if err != nil {
		t.Fatalf("ServerConfig() error = %v", err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hub := fakehub.Start(t, fakehub.Options{TLS: srvTLS, Token: "file-token"})
	stderr := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "--hub", hub.Addr, "--tls-ca", pki.CACert, "--tls-cert", pki.ClientCert, "--tls-key", pki.ClientKey,
		"--token-file", tokenFile, "--executor", "noop", "--state-dir", t.TempDir(), "--log-json")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	hub.NextStream(t, wait)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal: %v", err)
	}
	if got := exitCode(t, cmd, stderr); got != exitOK {
		t.Errorf("worker exit code = %d, want 0; stderr:\n%s", got, stderr.String())
	}
	if strings.Contains(stderr.String(), "file-token") {
		t.Errorf("worker log contains the token")
	}
}

func TestBinaryNoHubAtStartup(t *testing.T) {
	bin := buildWorker(t)
	hub := fakehub.Start(t, fakehub.Options{}) // plaintext: a TLS worker cannot talk to it
	stderr := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "--hub", hub.Addr, "--executor", "noop", "--state-dir", t.TempDir(), "--connect-timeout", "300ms")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	if got := exitCode(t, cmd, stderr); got != exitFailure {
		t.Errorf("worker exit code = %d, want %d", got, exitFailure)
	}
	if !strings.Contains(stderr.String(), "no hub reachable") {
		t.Errorf("stderr = %q, want it to say no hub is reachable", stderr.String())
	}
	if !strings.Contains(stderr.String(), "hint: if the hub requires client certificates") {
		t.Errorf("stderr = %q, want the client-certificate hint", stderr.String())
	}
}

func TestBinaryPlaintextAgainstTLSHub(t *testing.T) {
	bin := buildWorker(t)
	pki := tlstest.Generate(t, t.TempDir())
	srvTLS, err := tlsutil.ServerConfig(pki.ServerCert, pki.ServerKey, "")
	if err != nil {
		t.Fatalf("ServerConfig() error = %v", err)
	}
	hub := fakehub.Start(t, fakehub.Options{TLS: srvTLS})
	stderr := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "--hub", hub.Addr, "--insecure", "--executor", "noop", "--state-dir", t.TempDir(), "--connect-timeout", "300ms")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	if got := exitCode(t, cmd, stderr); got != exitFailure {
		t.Errorf("worker exit code = %d, want %d", got, exitFailure)
	}
	if !strings.Contains(stderr.String(), "drop --insecure and pass --tls-ca") {
		t.Errorf("stderr = %q, want the plaintext hint", stderr.String())
	}
}

// Two worker processes on one state directory would share a worker id:
// the second exits 1 at once, with one line naming the directory and the
// flag to change, and the first keeps its session.
func TestBinaryStateDirLocked(t *testing.T) {
	bin := buildWorker(t)
	hub := fakehub.Start(t, fakehub.Options{})
	dir := t.TempDir()
	args := []string{"--hub", hub.Addr, "--insecure", "--executor", "noop", "--state-dir", dir}
	first := exec.Command(bin, args...)
	firstErr := &syncbuf.Buffer{}
	first.Stderr = firstErr
	if err := first.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() { _ = first.Process.Kill() })
	s := hub.NextStream(t, wait)

	second := exec.Command(bin, args...)
	secondErr := &syncbuf.Buffer{}
	second.Stderr = secondErr
	if err := second.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() { _ = second.Process.Kill() })
	if got := exitCode(t, second, secondErr); got != exitFailure {
		t.Fatalf("second worker exit code = %d, want %d; stderr:\n%s", got, exitFailure, secondErr.String())
	}
	// The start-up warnings (no token, plaintext) come before it.
	lines := strings.Split(strings.TrimSpace(secondErr.String()), "\n")
	out := lines[len(lines)-1]
	want := fmt.Sprintf("blacktree-worker: state directory is in use by another worker (pid %d): %s; give each worker on this host its own --state-dir", first.Process.Pid, dir)
	if out != want {
		t.Errorf("second worker's last line = %q, want %q", out, want)
	}
	select {
	case <-s.Done:
		t.Errorf("the first worker's stream ended when the second started")
	case s2 := <-hub.Streams:
		t.Errorf("a second worker registered (id %s)", s2.Register.GetWorkerId())
	default:
	}
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal: %v", err)
	}
	if got := exitCode(t, first, firstErr); got != exitOK {
		t.Errorf("first worker exit code = %d, want 0; stderr:\n%s", got, firstErr.String())
	}
}
