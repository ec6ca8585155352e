package devenv

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"
)

// GitHTTPBackend is where Debian's git package puts git-http-backend.
const GitHTTPBackend = "/usr/lib/git-core/git-http-backend"

// GitServer serves bare repositories under Root over smart HTTP on
// 127.0.0.1. Every request must carry HTTP basic auth whose password is
// Token (any user name), as GitHub accepts a token.
type GitServer struct {
	// URL is the base URL, e.g. http://127.0.0.1:41234; a repository named
	// owner/name is at URL + "/owner/name.git" (and without .git).
	URL string
	// Token is the password the server demands.
	Token string
	// Root holds the bare repositories.
	Root string

	denied atomic.Int64
	srv    *http.Server
	done   chan struct{}
}

// StartGitServer starts a git server over the bare repositories in root.
func StartGitServer(root, token string) (*GitServer, error) {
	if _, err := os.Stat(GitHTTPBackend); err != nil {
		return nil, fmt.Errorf("git http-backend not found at %s (apt-get install git): %w", GitHTTPBackend, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git server listen: %w", err)
	}
	g := &GitServer{URL: "http://" + ln.Addr().String(), Token: token, Root: root, done: make(chan struct{})}
	backend := &cgi.Handler{
		Path: GitHTTPBackend,
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	g.srv = &http.Server{Handler: g.auth(backend), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(g.done)
		_ = g.srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	return g, nil
}

func (g *GitServer) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(g.Token)) != 1 {
			g.denied.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="blacktree-devenv"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Denied counts requests refused for a missing or wrong token.
func (g *GitServer) Denied() int64 { return g.denied.Load() }

// Close stops the server and waits for it.
func (g *GitServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := g.srv.Shutdown(ctx)
	<-g.done
	return err
}

// CreateRepo makes the bare repository Root/<name>.git whose branch holds
// files (path → content; a content starting with "symlink:" makes a
// symbolic link to the rest). name is "owner/repo".
func (g *GitServer) CreateRepo(name, branch string, files map[string]string) error {
	work, err := os.MkdirTemp("", "devenv-repo-")
	if err != nil {
		return fmt.Errorf("create repo %s: %w", name, err)
	}
	defer os.RemoveAll(work)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("create repo %s: %w", name, err)
		}
		content := files[p]
		if target, ok := cutPrefix(content, "symlink:"); ok {
			err = os.Symlink(target, full)
		} else {
			err = os.WriteFile(full, []byte(content), 0o644)
		}
		if err != nil {
			return fmt.Errorf("create repo %s: %w", name, err)
		}
	}
	bare := filepath.Join(g.Root, name+".git")
	steps := [][]string{
		{"init", "-q", "-b", branch, work},
		{"-C", work, "add", "-A"},
		{"-C", work, "-c", "user.name=devenv", "-c", "user.email=devenv@localhost", "commit", "-q", "-m", "initial"},
		{"clone", "-q", "--bare", work, bare},
	}
	for _, args := range steps {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("create repo %s: git %s: %w: %s", name, args[0], err, out)
		}
	}
	return nil
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// ErrNoGit is returned when the git CLI is missing.
var ErrNoGit = errors.New("git not installed (apt-get install git)")

// CheckGit reports whether the git CLI and http-backend are installed.
func CheckGit() error {
	if _, err := exec.LookPath("git"); err != nil {
		return ErrNoGit
	}
	if _, err := os.Stat(GitHTTPBackend); err != nil {
		return ErrNoGit
	}
	return nil
}
