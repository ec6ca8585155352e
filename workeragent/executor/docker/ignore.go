package docker

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// ErrBadDockerignore is returned when the executor refuses a
// .dockerignore: not a regular file, too large, or with a pattern that does
// not compile.
var ErrBadDockerignore = errors.New("bad .dockerignore")

// maxDockerignoreBytes bounds the .dockerignore read from a repository.
const maxDockerignoreBytes = 1 << 20

// contextIgnore is the context's .dockerignore, read with the docker CLI's
// rules (github.com/moby/patternmatcher): comments, "!" exceptions, "**",
// the last matching pattern wins, and a pattern matching a directory
// excludes everything under it. The Dockerfile and .dockerignore itself are
// sent even when excluded, as the CLI does: the engine needs them.
type contextIgnore struct {
	pm       *patternmatcher.PatternMatcher // nil: nothing is excluded
	patterns int
	keep     map[string]bool // slash paths relative to the context, always sent
	// parents holds the match results of directories already walked,
	// keyed by slash path ("." for the context root). Used by one walk.
	parents map[string]patternmatcher.MatchInfo
}

// loadIgnore reads <context>/.dockerignore when there is one. It is read
// only as a regular file (never through a symlink, which could point out of
// the clone).
func loadIgnore(r resolvedPaths) (*contextIgnore, error) {
	ci := &contextIgnore{keep: map[string]bool{".dockerignore": true}, parents: map[string]patternmatcher.MatchInfo{}}
	if r.dockerfileInContext != "" {
		ci.keep[r.dockerfileInContext] = true
	}
	p := filepath.Join(r.contextDir, ".dockerignore")
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return ci, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDockerignore, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file (%s)", ErrBadDockerignore, fi.Mode().Type())
	}
	if fi.Size() > maxDockerignoreBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadDockerignore, fi.Size(), maxDockerignoreBytes)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDockerignore, unwrapPathError(err))
	}
	patterns, err := ignorefile.ReadAll(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDockerignore, err)
	}
	if len(patterns) == 0 {
		return ci, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDockerignore, err)
	}
	ci.pm, ci.patterns = pm, len(patterns)
	return ci, nil
}

// skip reports whether the context entry at rel (slash-separated) stays out
// of the context, and for a directory whether its subtree can be skipped
// whole. Entries must be visited parents first, as filepath.WalkDir does.
func (ci *contextIgnore) skip(rel string, isDir bool) (skip, skipTree bool, err error) {
	if ci.pm == nil {
		return false, false, nil
	}
	excluded, info, err := ci.pm.MatchesUsingParentResults(rel, ci.parents[path.Dir(rel)])
	if err != nil {
		return false, false, fmt.Errorf("%w: %w", ErrBadDockerignore, err)
	}
	if isDir {
		ci.parents[rel] = info
	}
	if !excluded || ci.keep[rel] {
		return false, false, nil
	}
	// An excluded directory may still hold entries a "!" pattern brings
	// back (or the Dockerfile); only without those can the walk skip it.
	return true, isDir && !ci.pm.Exclusions() && !ci.keepsUnder(rel), nil
}

// keepsUnder reports whether a path that is always sent lies under dir.
func (ci *contextIgnore) keepsUnder(dir string) bool {
	for k := range ci.keep {
		if len(k) > len(dir) && k[:len(dir)] == dir && k[len(dir)] == '/' {
			return true
		}
	}
	return false
}
