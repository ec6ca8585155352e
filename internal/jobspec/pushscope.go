package jobspec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// ErrPushOutsideScope is wrapped by the error of an image name that falls
// under none of a PushScope's prefixes.
var ErrPushOutsideScope = errors.New("image name outside the allowed push prefixes")

// PushScope is the set of image-name prefixes pushes may go under: a
// registry host (`registry.example.com:5000`) or a host and repository
// path (`registry.example.com/team`). A name is under a prefix when it
// equals it or continues it after a `/`, so `reg/team` covers
// `reg/team/app` but not `reg/team-b/app`. Hosts compare lower-cased,
// Docker Hub's aliases (`index.docker.io`, `registry-1.docker.io`) as
// `docker.io`. The zero PushScope is empty: it covers nothing.
type PushScope struct {
	prefixes []string // normalised: host[/path], no trailing slash
}

// ParsePushScope parses prefixes (`host[/path]`; a first component
// without a dot, a colon or `localhost` is a Docker Hub path, as in image
// names). Empty entries are skipped.
func ParsePushScope(prefixes []string) (PushScope, error) {
	var s PushScope
	for _, p := range prefixes {
		p = strings.TrimSuffix(strings.TrimSpace(p), "/")
		if p == "" {
			continue
		}
		norm, err := normalisePrefix(p)
		if err != nil {
			return PushScope{}, err
		}
		s.prefixes = append(s.prefixes, norm)
	}
	return s, nil
}

func normalisePrefix(p string) (string, error) {
	host, path, hasPath := strings.Cut(p, "/")
	if !looksLikeHost(host) {
		host, path, hasPath = "docker.io", p, true
	}
	host = canonicalHost(host)
	if !hasPath {
		// A host alone: check it as the domain of a name under it.
		if _, err := reference.ParseNormalizedNamed(host + "/x"); err != nil {
			return "", fmt.Errorf("push prefix %q: not a registry host: %w", p, err)
		}
		return host, nil
	}
	if _, err := reference.ParseNormalizedNamed(host + "/" + path); err != nil {
		return "", fmt.Errorf("push prefix %q: not a registry host and repository path: %w", p, err)
	}
	return host + "/" + path, nil
}

// looksLikeHost applies the image-name rule: the first component is a
// registry host when it has a dot or a colon, or is localhost.
func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

// canonicalHost lower-cases a registry host and folds Docker Hub's
// aliases into docker.io.
func canonicalHost(h string) string {
	h = strings.ToLower(h)
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}

// Empty reports a scope that covers nothing.
func (s PushScope) Empty() bool { return len(s.prefixes) == 0 }

// String lists the normalised prefixes, comma-separated.
func (s PushScope) String() string { return strings.Join(s.prefixes, ", ") }

// Check returns nil when named (a normalised name, e.g. from
// reference.ParseNormalizedNamed) is under one of the prefixes, else an
// error wrapping ErrPushOutsideScope that names the image and the
// prefixes.
func (s PushScope) Check(named reference.Named) error {
	full := canonicalHost(reference.Domain(named)) + "/" + reference.Path(named)
	for _, p := range s.prefixes {
		if full == p || strings.HasPrefix(full, p+"/") {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not under %s", ErrPushOutsideScope, named.Name(), s)
}
