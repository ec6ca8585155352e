package docker

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxDockerfileBytes bounds the Dockerfile the executor reads itself (when
// it lies outside the build context).
const maxDockerfileBytes = 1 << 20

// ErrPathEscape is wrapped by every refusal of a path that leaves the
// repository (lexically or through a symlink).
var ErrPathEscape = errors.New("path leaves the repository")

// reqPaths are the request's contextDir and dockerfilePath after the
// lexical checks: clean, relative, slash-separated, inside the repository.
type reqPaths struct {
	contextDir string // "." for the repository root
	dockerfile string // relative to the repository root
}

// checkRequestPaths applies the lexical checks (before any clone): both
// paths relative, no absolute paths, no `..` element, no backslashes or
// NULs. An empty contextDir is "."; an empty dockerfilePath is
// contextDir/Dockerfile.
func checkRequestPaths(contextDir, dockerfilePath string) (reqPaths, error) {
	if contextDir == "" {
		contextDir = "."
	}
	ctx, err := cleanRel("contextDir", contextDir)
	if err != nil {
		return reqPaths{}, err
	}
	if dockerfilePath == "" {
		dockerfilePath = ctx + "/Dockerfile"
	}
	df, err := cleanRel("dockerfilePath", dockerfilePath)
	if err != nil {
		return reqPaths{}, err
	}
	if df == "." {
		return reqPaths{}, fmt.Errorf("dockerfilePath %q names the repository root, not a file", dockerfilePath)
	}
	return reqPaths{contextDir: ctx, dockerfile: df}, nil
}

func cleanRel(field, p string) (string, error) {
	switch {
	case strings.ContainsAny(p, "\\\x00"):
		return "", fmt.Errorf("%s %q contains a backslash or NUL", field, p)
	case strings.HasPrefix(p, "/") || filepath.IsAbs(p):
		return "", fmt.Errorf("%s %q is absolute; it must be relative to the repository root: %w", field, p, ErrPathEscape)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("%s %q contains `..`: %w", field, p, ErrPathEscape)
		}
		if el == ".git" {
			return "", fmt.Errorf("%s %q points into .git", field, p)
		}
	}
	c := filepath.ToSlash(filepath.Clean(filepath.FromSlash(p)))
	if c != "." && !filepath.IsLocal(c) {
		return "", fmt.Errorf("%s %q is not a local path: %w", field, p, ErrPathEscape)
	}
	return c, nil
}

// resolvedPaths are the on-disk locations the build uses, every symlink
// resolved and checked to stay inside the clone.
type resolvedPaths struct {
	contextRel    string // as requested, cleaned ("." for the root)
	dockerfileRel string // as requested, cleaned
	root          string // the clone, symlinks resolved
	contextDir    string // absolute, inside root
	dockerfile    string // absolute, inside root, a regular file
	// dockerfileInContext is dockerfile relative to contextDir
	// (slash-separated) when it lies inside the context, else "".
	dockerfileInContext string
}

// resolve checks the paths against the cloned repository at repoDir: each
// is resolved with filepath.EvalSymlinks and refused when the result leaves
// the clone, does not exist, or has the wrong type.
func (p reqPaths) resolve(repoDir string) (resolvedPaths, error) {
	root, err := filepath.EvalSymlinks(repoDir)
	if err != nil {
		return resolvedPaths{}, fmt.Errorf("resolving the clone: %w", err)
	}
	ctxDir, err := resolveInside(root, "contextDir", p.contextDir)
	if err != nil {
		return resolvedPaths{}, err
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return resolvedPaths{}, fmt.Errorf("contextDir %q is not a directory in the repository", p.contextDir)
	}
	df, err := resolveInside(root, "dockerfilePath", p.dockerfile)
	if err != nil {
		return resolvedPaths{}, err
	}
	fi, err := os.Stat(df)
	switch {
	case err != nil || !fi.Mode().IsRegular():
		return resolvedPaths{}, fmt.Errorf("dockerfilePath %q is not a file in the repository", p.dockerfile)
	case fi.Size() > maxDockerfileBytes:
		return resolvedPaths{}, fmt.Errorf("dockerfilePath %q is larger than %d bytes", p.dockerfile, maxDockerfileBytes)
	}
	r := resolvedPaths{
		contextRel:    p.contextDir,
		dockerfileRel: p.dockerfile,
		root:          root,
		contextDir:    ctxDir,
		dockerfile:    df,
	}
	if rel, ok := within(ctxDir, df); ok {
		r.dockerfileInContext = filepath.ToSlash(rel)
	}
	return r, nil
}

// resolveInside joins rel to root, resolves symlinks and checks that the
// result is still inside root.
func resolveInside(root, field, rel string) (string, error) {
	real, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s %q does not exist in the repository", field, rel)
		}
		return "", fmt.Errorf("%s %q: %w", field, rel, unwrapPathError(err))
	}
	if _, ok := within(root, real); !ok {
		return "", fmt.Errorf("%s %q resolves (through a symlink) outside the repository: %w", field, rel, ErrPathEscape)
	}
	return real, nil
}

// within reports whether path is dir or inside it, and path relative to dir.
func within(dir, path string) (string, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", false
	}
	return rel, true
}

// unwrapPathError drops the absolute workspace path from an *fs.PathError
// so error texts speak of repository paths only.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
