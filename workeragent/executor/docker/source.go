package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	gitclient "github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/blacktree/blacktree/internal/jobspec"
)

// gitUsername is the basic-auth user name sent with the token (GitHub's
// convention for installation and fine-grained tokens).
const gitUsername = "x-access-token"

var ownerNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)

// repoSource is a resolved repoUrl: url carries no credentials; display
// is what error texts and logs call it (the request's own repoUrl).
type repoSource struct {
	url, display string
}

func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	switch {
	case err != nil:
		return nil, fmt.Errorf("docker executor: git base URL %q: %w", s, err)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("docker executor: git base URL %q: scheme must be https (or http)", s)
	case u.User != nil:
		return nil, errors.New("docker executor: git base URL must not carry credentials")
	case u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("docker executor: git base URL %q must be scheme://host[/path]", s)
	}
	return u, nil
}

// resolveRepo turns a request's repoUrl into a clone URL: `owner/name`
// against the git base URL, or a full https URL on an allowed host.
func (e *Executor) resolveRepo(repo string) (repoSource, error) {
	if !strings.Contains(repo, "://") {
		if !ownerNameRe.MatchString(repo) || strings.HasPrefix(repo, ".") || strings.Contains(repo, "/.") || strings.Contains(repo, "..") {
			return repoSource{}, fmt.Errorf("repoUrl %q is neither owner/name nor an https:// URL", repo)
		}
		u := *e.base
		name := repo
		if !strings.HasSuffix(name, ".git") {
			name += ".git"
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + name
		return repoSource{url: u.String(), display: repo}, nil
	}
	u, err := url.Parse(repo)
	if err != nil {
		return repoSource{}, errors.New("repoUrl is not a valid URL")
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case u.Scheme != "https":
		return repoSource{}, fmt.Errorf("repoUrl scheme %q is not allowed, only https", u.Scheme)
	case u.User != nil:
		return repoSource{}, errors.New("repoUrl must not carry credentials; pass the token in githubToken")
	case host == "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return repoSource{}, errors.New("repoUrl must be https://host/path without query or fragment")
	case !e.policy.AllowsHost(strings.ToLower(u.Host), host):
		return repoSource{}, fmt.Errorf("repoUrl host %q is not an allowed git host", host)
	case jobspec.IsPrivateHost(host) && !e.cfg.AllowPrivateGitHosts:
		return repoSource{}, fmt.Errorf("repoUrl host %q is a local, private or metadata address", host)
	}
	return repoSource{url: u.String(), display: u.Redacted()}, nil
}

// clone fetches src at branch (shallow, single branch) into a new
// directory under ws and returns it. The token travels only as the basic
// auth password of go-git's HTTP requests. The transfer is bounded by
// MaxRepoBytes, and so is the checked-out tree (checked before checkout).
func (e *Executor) clone(ctx context.Context, src repoSource, branch, token string, ws string, out *jobOutput) (string, error) {
	var auth transport.AuthMethod
	if token != "" {
		auth = &githttp.BasicAuth{Username: gitUsername, Password: token}
	}
	lim := &byteLimit{max: e.cfg.MaxRepoBytes}
	ctx = context.WithValue(ctx, byteLimitKey{}, lim)
	ctx = context.WithValue(ctx, egressKey{}, e.egress)
	defer e.egress.transport.CloseIdleConnections()

	refs := []plumbing.ReferenceName{""} // the remote's HEAD
	if branch != "" {
		refs = []plumbing.ReferenceName{plumbing.NewBranchReferenceName(branch), plumbing.NewTagReferenceName(branch)}
	}
	what := src.display
	if branch != "" {
		what += " (branch " + branch + ")"
	}
	out.printf("clone: fetching %s\n", what)
	for i, ref := range refs {
		dir := filepath.Join(ws, fmt.Sprintf("src%d", i))
		repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
			URL:           src.url,
			Auth:          auth,
			ReferenceName: ref,
			SingleBranch:  true,
			Depth:         1,
			NoCheckout:    true,
			Tags:          git.NoTags,
		})
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			if lim.exceeded() {
				return "", fmt.Errorf("repository %s is larger than %d bytes", src.display, lim.max)
			}
			if i+1 < len(refs) && isRefNotFound(err) {
				continue
			}
			return "", cloneError(src, branch, err)
		}
		if err := e.checkout(repo, src); err != nil {
			return "", err
		}
		if head, err := repo.Head(); err == nil {
			out.printf("clone: checked out %s at %s\n", src.display, head.Hash())
		}
		return dir, nil
	}
	return "", fmt.Errorf("branch %q not found in %s", branch, src.display)
}

// checkout sums the sizes of HEAD's files and refuses trees larger than
// MaxRepoBytes (a small pack can expand enormously), then checks out.
func (e *Executor) checkout(repo *git.Repository, src repoSource) error {
	head, err := repo.Head()
	if err != nil {
		return fmt.Errorf("reading HEAD of %s: %w", src.display, err)
	}
	commit, err := repo.CommitObject(head.Hash())
	if err != nil {
		return fmt.Errorf("reading commit of %s: %w", src.display, err)
	}
	files, err := commit.Files()
	if err != nil {
		return fmt.Errorf("reading tree of %s: %w", src.display, err)
	}
	var total int64
	errTooBig := errors.New("too big")
	err = files.ForEach(func(f *object.File) error {
		if total += f.Size; total > e.cfg.MaxRepoBytes {
			return errTooBig
		}
		return nil
	})
	if errors.Is(err, errTooBig) {
		return fmt.Errorf("repository %s checks out to more than %d bytes", src.display, e.cfg.MaxRepoBytes)
	} else if err != nil {
		return fmt.Errorf("reading tree of %s: %w", src.display, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return fmt.Errorf("worktree of %s: %w", src.display, err)
	}
	if err := wt.Reset(&git.ResetOptions{Mode: git.HardReset, Commit: head.Hash()}); err != nil {
		return fmt.Errorf("checking out %s: %w", src.display, err)
	}
	return nil
}

func isRefNotFound(err error) bool {
	return errors.Is(err, git.NoMatchingRefSpecError{}) || errors.Is(err, plumbing.ErrReferenceNotFound)
}

// cloneError turns go-git's errors into operator words. go-git's texts
// carry the URL at most, which never holds credentials here.
func cloneError(src repoSource, branch string, err error) error {
	var refused *egressError
	switch {
	case errors.As(err, &refused):
		return fmt.Errorf("%s: %w", src.display, refused)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("authentication failed for %s", src.display)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Errorf("repository %s not found (or the token cannot read it)", src.display)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("repository %s is empty", src.display)
	case isRefNotFound(err):
		return fmt.Errorf("branch %q not found in %s", branch, src.display)
	}
	return fmt.Errorf("cloning %s: %w", src.display, err)
}

// The git HTTP transport. go-git selects transports per scheme from a
// process-wide table, so the executor installs (once) a client whose
// RoundTripper routes a clone's requests through its executor's
// gitEgress transport and bounds the bytes the clone receives, and whose
// CheckRedirect applies that executor's redirect policy. Both come from
// the request context; requests without them pass to
// http.DefaultTransport unchanged, so other go-git users in the process
// see ordinary behaviour.
var gitTransportOnce sync.Once

func installGitTransport() {
	gitTransportOnce.Do(func() {
		c := githttp.NewClient(&http.Client{
			Transport:     gitRoundTripper{},
			CheckRedirect: checkGitRedirect,
		})
		gitclient.InstallProtocol("https", c)
		gitclient.InstallProtocol("http", c)
	})
}

type egressKey struct{}

func checkGitRedirect(req *http.Request, _ []*http.Request) error {
	if g, ok := req.Context().Value(egressKey{}).(*gitEgress); ok {
		return g.checkRedirect(req)
	}
	return nil
}

type byteLimitKey struct{}

// byteLimit counts the bytes of one clone's responses.
type byteLimit struct {
	max  int64
	n    atomic.Int64
	over atomic.Bool
}

// errRepoTooLarge is returned when a clone's responses exceed
// Config.MaxRepoBytes.
var errRepoTooLarge = errors.New("repository exceeds the size limit")

func (l *byteLimit) add(n int) error {
	if l.n.Add(int64(n)) > l.max {
		l.over.Store(true)
		return errRepoTooLarge
	}
	return nil
}

func (l *byteLimit) exceeded() bool { return l.over.Load() }

type gitRoundTripper struct{}

func (gitRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	next := http.DefaultTransport
	if g, ok := req.Context().Value(egressKey{}).(*gitEgress); ok {
		next = g.transport
	}
	resp, err := next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if lim, ok := req.Context().Value(byteLimitKey{}).(*byteLimit); ok {
		resp.Body = &limitedBody{ReadCloser: resp.Body, lim: lim}
	}
	return resp, nil
}

type limitedBody struct {
	io.ReadCloser
	lim *byteLimit
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if lerr := b.lim.add(n); lerr != nil {
		return n, lerr
	}
	return n, err
}
