package jobspec

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"unicode"

	"github.com/distribution/reference"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Limits on JobRequest fields. Generous for real use, tight enough that a
// hostile request cannot make the hub or a worker do unbounded work.
const (
	MaxJobIDLen       = 128
	MaxRepoURLLen     = 2048
	MaxBranchLen      = 255
	MaxPathLen        = 1024
	MaxImageNameLen   = 512
	MaxTokenLen       = 4096
	MaxWorkerLabels   = 32
	MaxLabelLen       = 128
	MaxTimeoutSeconds = 24 * 60 * 60
	MaxBuildArgs      = 64
	MaxBuildArgKeyLen = 128
	MaxBuildArgLen    = 4096
)

// DefaultAllowedHost is the git host that full https repoUrls may name when
// the policy lists none.
const DefaultAllowedHost = "github.com"

// ErrInvalid is wrapped by every *ValidationError.
var ErrInvalid = errors.New("invalid job request")

// ValidationError names the field that is wrong and why. Its text never
// contains the token.
type ValidationError struct {
	// Field is the JSON name of the offending field, e.g. "repoUrl".
	Field string
	// Reason says what is wrong, in words for an operator.
	Reason string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Policy is the operator's configuration for validation.
type Policy struct {
	// AllowedHosts are the hosts a full `https://` repoUrl may name
	// (lower-case, optionally with :port). Empty means DefaultAllowedHost.
	AllowedHosts []string
	// AllowPrivateHosts lets AllowedHosts name loopback, private and
	// link-local addresses (on-prem git servers, tests). Off by default:
	// such URLs are refused even when listed.
	AllowPrivateHosts bool
	// PushScope, when not empty, is where imageName (as given, normalised)
	// must point: the hub's --allowed-push-prefixes. Empty checks nothing
	// here; a docker worker checks its own scope against the name it
	// would push.
	PushScope PushScope
}

var (
	jobIDRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	ownerNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	labelRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	buildArgRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidJobID checks a job id on its own (it is what makes a failure
// reportable at all).
func ValidJobID(id string) error {
	switch {
	case id == "":
		return invalid("jobId", "missing")
	case len(id) > MaxJobIDLen:
		return invalid("jobId", "longer than %d characters", MaxJobIDLen)
	case !jobIDRe.MatchString(id):
		return invalid("jobId", "may contain only letters, digits and . _ : -")
	}
	return nil
}

// Validate checks every field of req (docs/protocol.md#validation). It
// returns the
// first problem as a *ValidationError.
func Validate(req *blacktreev1.JobRequest, p Policy) error {
	if err := ValidJobID(req.GetJobId()); err != nil {
		return err
	}
	checks := []func() error{
		func() error { return validRepoURL(req.GetRepoUrl(), p) },
		func() error { return validBranch(req.GetBranch()) },
		func() error { return validRelPath("dockerfilePath", req.GetDockerfilePath()) },
		func() error { return validRelPath("contextDir", req.GetContextDir()) },
		func() error { return validImageName(req.GetImageName(), p.PushScope) },
		func() error { return validToken(req.GetGithubToken()) },
		func() error { return validLabels(req.GetWorkerLabels()) },
		func() error { return validBuildArgs(req.GetBuildArgs()) },
		func() error {
			if req.GetTimeoutSeconds() > MaxTimeoutSeconds {
				return invalid("timeoutSeconds", "more than %d", MaxTimeoutSeconds)
			}
			return nil
		},
	}
	for _, c := range checks {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

func validRepoURL(s string, p Policy) error {
	const f = "repoUrl"
	switch {
	case s == "":
		return invalid(f, "missing")
	case len(s) > MaxRepoURLLen:
		return invalid(f, "longer than %d characters", MaxRepoURLLen)
	case hasControl(s):
		return invalid(f, "contains control characters or spaces")
	}
	if !strings.Contains(s, "://") {
		if !ownerNameRe.MatchString(s) || strings.HasPrefix(s, ".") || strings.Contains(s, "/.") || strings.Contains(s, "..") {
			return invalid(f, "%q is neither owner/name nor an https:// URL", s)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return invalid(f, "not a valid URL")
	}
	if u.Scheme != "https" {
		return invalid(f, "scheme %q is not allowed, only https", u.Scheme)
	}
	if u.User != nil {
		return invalid(f, "credentials in the URL are not allowed; pass the token in githubToken")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return invalid(f, "query strings and fragments are not allowed")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return invalid(f, "URL has no host")
	}
	if IsPrivateHost(host) && !p.AllowPrivateHosts {
		return invalid(f, "host %q is a local, private or metadata address", host)
	}
	if !p.AllowsHost(strings.ToLower(u.Host), host) {
		return invalid(f, "host %q is not in the allowed git hosts", host)
	}
	if cleaned := path.Clean(u.Path); cleaned == "/" || cleaned == "." || strings.Contains(u.Path, "..") {
		return invalid(f, "URL path %q does not name a repository", u.Path)
	}
	return nil
}

// AllowsHost reports whether a repository URL whose host is hostPort
// (host with its port, if any) and host (without it), both lower case, is
// on p.AllowedHosts (DefaultAllowedHost when that is empty).
func (p Policy) AllowsHost(hostPort, host string) bool {
	allowed := p.AllowedHosts
	if len(allowed) == 0 {
		allowed = []string{DefaultAllowedHost}
	}
	for _, a := range allowed {
		a = strings.ToLower(a)
		if a == hostPort || a == host {
			return true
		}
	}
	return false
}

// IsPrivateHost reports IP literals that IsPrivateAddr refuses, and names
// that are only ever local or name the cloud metadata service. It looks
// at the name only; where a name resolves is checked when the worker
// connects (workeragent/executor/docker).
func IsPrivateHost(host string) bool {
	switch host {
	case "localhost", "metadata", "metadata.google.internal":
		return true
	}
	if strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".internal") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && IsPrivateAddr(a)
}

func validBranch(s string) error {
	const f = "branch"
	switch {
	case s == "":
		return nil
	case len(s) > MaxBranchLen:
		return invalid(f, "longer than %d characters", MaxBranchLen)
	case hasControl(s) || strings.ContainsAny(s, "~^:?*[\\"):
		return invalid(f, "contains characters git does not allow in a ref")
	case strings.HasPrefix(s, "-") || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") ||
		strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock") || strings.Contains(s, "..") ||
		strings.Contains(s, "//") || strings.Contains(s, "@{") || strings.Contains(s, "/."):
		return invalid(f, "%q is not a valid git ref name", s)
	}
	return nil
}

// validRelPath keeps dockerfilePath and contextDir inside the repository:
// relative, no `..` element, no backslashes or control characters. The
// worker checks symlinks again on disk after cloning.
func validRelPath(field, s string) error {
	switch {
	case s == "":
		return nil
	case len(s) > MaxPathLen:
		return invalid(field, "longer than %d characters", MaxPathLen)
	case hasControl(s) || strings.Contains(s, "\\"):
		return invalid(field, "contains control characters or backslashes")
	case strings.HasPrefix(s, "/"):
		return invalid(field, "%q is absolute; it must be relative to the repository root", s)
	}
	for _, el := range strings.Split(s, "/") {
		if el == ".." {
			return invalid(field, "%q leaves the repository", s)
		}
	}
	return nil
}

func validImageName(s string, scope PushScope) error {
	const f = "imageName"
	switch {
	case s == "":
		return invalid(f, "missing")
	case len(s) > MaxImageNameLen:
		return invalid(f, "longer than %d characters", MaxImageNameLen)
	}
	if scope.Empty() && validImageNames.has(s) {
		return nil
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return invalid(f, "%q is not a valid image reference (%v)", s, err)
	}
	validImageNames.add(s)
	if scope.Empty() {
		return nil
	}
	if err := scope.Check(named); err != nil {
		return invalid(f, "%q: %v", s, err)
	}
	return nil
}

// validImageNames remembers image names that parsed as valid references.
// Parsing (distribution/reference's regular expressions) was the largest
// single cost of validating a job, twice per job (hub and worker), while a
// build farm rebuilds the same few images over and over. Only successes
// are kept, the parse is a pure function of the string, and the set is
// bounded (cleared when full).
var validImageNames = &stringSet{max: 4096}

type stringSet struct {
	max int
	mu  sync.Mutex // guards m
	m   map[string]struct{}
}

func (c *stringSet) has(s string) bool {
	c.mu.Lock()
	_, ok := c.m[s]
	c.mu.Unlock()
	return ok
}

func (c *stringSet) add(s string) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]struct{}, 64)
	}
	c.m[s] = struct{}{}
	c.mu.Unlock()
}

func validToken(s string) error {
	switch {
	case len(s) > MaxTokenLen:
		return invalid("githubToken", "longer than %d characters", MaxTokenLen)
	case hasControl(s):
		return invalid("githubToken", "contains control characters or spaces")
	}
	return nil
}

func validLabels(m map[string]string) error {
	if len(m) > MaxWorkerLabels {
		return invalid("workerLabels", "more than %d labels", MaxWorkerLabels)
	}
	for k, v := range m {
		if len(k) > MaxLabelLen || len(v) > MaxLabelLen || !labelRe.MatchString(k) || hasControl(v) {
			return invalid("workerLabels", "label %q is not a valid key=value pair", k)
		}
	}
	return nil
}

func validBuildArgs(m map[string]string) error {
	if len(m) > MaxBuildArgs {
		return invalid("buildArgs", "more than %d build args", MaxBuildArgs)
	}
	for k, v := range m {
		switch {
		case len(k) > MaxBuildArgKeyLen:
			return invalid("buildArgs", "a name is longer than %d characters", MaxBuildArgKeyLen)
		case !buildArgRe.MatchString(k):
			return invalid("buildArgs", "name %q is not a valid ARG name", k)
		case len(v) > MaxBuildArgLen:
			return invalid("buildArgs", "value of %s is longer than %d characters", k, MaxBuildArgLen)
		case strings.IndexFunc(v, unicode.IsControl) >= 0:
			return invalid("buildArgs", "value of %s contains control characters", k)
		}
	}
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0
}
