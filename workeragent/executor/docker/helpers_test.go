package docker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/blacktree/blacktree/internal/devenv"
)

const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

func TestMain(m *testing.M) {
	if err := checkDocker(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: these tests need a Docker engine: %v\n"+
			"start one with: bash /work/shared/scripts/ensure-dockerd (or set DOCKER_HOST)\n", err)
		os.Exit(1)
	}
	if _, err := os.Stat(gitHTTPBackend); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: these tests need git's http backend at %s: install git\n", gitHTTPBackend)
		os.Exit(1)
	}
	// The keychain must read only the config the tests write.
	dir, err := os.MkdirTemp("", "blacktree-docker-config-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("DOCKER_CONFIG", dir)
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

func checkDocker() error {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Ping(ctx)
	return err
}

// gitServer is git smart HTTP (git http-backend behind net/http/cgi) on
// loopback that demands basic auth x-access-token:<token>.
type gitServer struct {
	root  string
	url   string
	token string
	srv   *httptest.Server
	stop  chan struct{} // closed at cleanup

	mu       sync.Mutex // guards the following
	holdPOST bool       // when set, upload-pack POSTs block until the client goes away
	held     chan struct{}
	leaks    []string // request lines that carried the token outside the auth header
}

func newGitServer(t *testing.T, token string) *gitServer {
	t.Helper()
	g := &gitServer{root: t.TempDir(), token: token, held: make(chan struct{}, 16), stop: make(chan struct{})}
	backend := &cgi.Handler{
		Path: gitHTTPBackend,
		Env:  []string{"GIT_PROJECT_ROOT=" + g.root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.String(), token) || strings.Contains(r.UserAgent(), token) {
			g.mu.Lock()
			g.leaks = append(g.leaks, r.Method+" "+r.URL.Path)
			g.mu.Unlock()
		}
		user, pass, ok := r.BasicAuth()
		if !ok || user != gitUsername || subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		g.mu.Lock()
		hold := g.holdPOST
		g.mu.Unlock()
		if hold && r.Method == http.MethodPost {
			// Read the body first: only then does net/http watch the
			// connection and cancel r.Context() when the client leaves.
			_, _ = io.Copy(io.Discard, r.Body)
			g.held <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-g.stop:
			}
			return
		}
		backend.ServeHTTP(w, r)
	}))
	g.url = g.srv.URL
	t.Cleanup(g.srv.Close)
	t.Cleanup(func() { close(g.stop) }) // runs first: releases held handlers
	return g
}

func (g *gitServer) setHold(v bool) {
	g.mu.Lock()
	g.holdPOST = v
	g.mu.Unlock()
}

func (g *gitServer) tokenLeaks() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.leaks...)
}

// repoFiles describes a repository: file contents by path, and symlinks
// (path → target).
type repoFiles struct {
	files    map[string]string
	symlinks map[string]string
	tag      string // a tag on the commit, when set
}

// addRepo creates owner/name.git (bare, branch main) on the server.
func (g *gitServer) addRepo(t *testing.T, ownerName string, rf repoFiles) {
	t.Helper()
	work := t.TempDir()
	for p, content := range rf.files {
		full := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range rf.symlinks {
		full := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	runGit(t, work, "init", "-q", "-b", "main")
	runGit(t, work, "add", "-A")
	runGit(t, work, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init")
	if rf.tag != "" {
		runGit(t, work, "tag", rf.tag)
	}
	dst := filepath.Join(g.root, filepath.FromSlash(ownerName)+".git")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	runGit(t, "", "clone", "-q", "--bare", work, dst)
}

func runGit(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// newRegistry starts an OCI registry on loopback that demands basic auth
// user:pass, and writes a docker config holding those credentials (the
// executor's keychain reads it).
func newRegistry(t *testing.T) (host string) {
	t.Helper()
	const user, pass = "pusher", "registry-pass"
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	if err := os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return host
}

type env struct {
	git     *gitServer
	regHost string
	workDir string
	exec    *Executor
}

const goodToken = "ghs_T0kenThatMustNeverLeak_9f8e7d6c5b4a"

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{git: newGitServer(t, goodToken), regHost: newRegistry(t), workDir: t.TempDir()}
	cfg := Config{
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "docker", Output: &tlogWriter{t: t}, Level: hclog.Debug}),
		GitBaseURL: e.git.url,
		Registry:   e.regHost + "/blacktree",
		WorkDir:    e.workDir,
		JobTimeout: 2 * time.Minute,
	}
	if mod != nil {
		mod(&cfg)
	}
	ex, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { ex.Close() })
	e.exec = ex
	return e
}

// workspaceLeft lists what remains in the work dir (want nothing).
func (e *env) workspaceLeft(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(e.workDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ents {
		names = append(names, d.Name())
	}
	return names
}

type tlogWriter struct{ t *testing.T }

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logSink collects a job's streamed output and signals when a substring
// shows up.
type logSink struct {
	mu    sync.Mutex // guards the following
	buf   bytes.Buffer
	watch string
	seen  chan struct{}
}

func newLogSink(watch string) *logSink { return &logSink{watch: watch, seen: make(chan struct{})} }

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	if s.watch != "" && strings.Contains(s.buf.String(), s.watch) {
		s.watch = ""
		close(s.seen)
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// registryRef parses an image reference on the test registry and returns
// the options that reach it (its transport is closed when the test ends).
func registryRef(t *testing.T, s string) (name.Reference, []remote.Option) {
	t.Helper()
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatalf("ParseReference(%q) = %v", s, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return ref, []remote.Option{remote.WithTransport(tr), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
}

// baseImage makes sure the engine holds the offline busybox base image
// (scripts/import-base-image) and returns its reference.
func baseImage(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := devenv.ImportBaseImage(ctx, devenv.BaseImage); err != nil {
		t.Fatalf("ImportBaseImage() = %v", err)
	}
	return devenv.BaseImage
}

// assertImagePresent checks that the engine still holds ref.
func assertImagePresent(t *testing.T, e *env, ref string) {
	t.Helper()
	if _, err := e.exec.docker.ImageInspect(context.Background(), ref); err != nil {
		t.Errorf("ImageInspect(%s) = %v, want the image kept after the job", ref, err)
	}
}
