package docker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// ErrNeedsNetwork is wrapped by the failure of a job whose Dockerfile
// would make the engine fetch from the network by itself (ADD <url>, a
// `# syntax=` frontend image) while builds have no network
// (--build-network none). The engine, not the RUN step, makes those
// fetches, so the build network does not stop them.
var ErrNeedsNetwork = errors.New("builds have no network (--build-network none)")

// syntaxBuildArg is the build argument through which BuildKit's
// Dockerfile frontend takes a frontend image, as a `# syntax=` line does.
const syntaxBuildArg = "BUILDKIT_SYNTAX"

// checkOffline refuses, before the build, a Dockerfile that needs the
// engine to fetch from the network: an ADD whose source is a URL or a git
// address, or whose source has a variable (its value cannot be checked
// before the build), and a frontend named by a `# syntax=` line or the
// BUILDKIT_SYNTAX build argument (a frontend can fetch anything itself).
// A Dockerfile this check cannot parse is refused too.
func checkOffline(dockerfile, dockerfileRel string, buildArgs map[string]string) error {
	if _, ok := buildArgs[syntaxBuildArg]; ok {
		return fmt.Errorf("%w: build argument %s names a frontend image, which the engine would fetch", ErrNeedsNetwork, syntaxBuildArg)
	}
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dockerfileRel, unwrapPathError(err))
	}
	if len(data) > maxDockerfileBytes {
		return fmt.Errorf("%s is larger than %d bytes", dockerfileRel, maxDockerfileBytes)
	}
	if syntax, _, _, ok := parser.DetectSyntax(data); ok {
		return fmt.Errorf("%w: %s names the frontend %q on its `# syntax=` line; the engine would fetch it, and a frontend can fetch anything", ErrNeedsNetwork, dockerfileRel, syntax)
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %s could not be checked for ADD <url>: %w", ErrNeedsNetwork, dockerfileRel, err)
	}
	for _, n := range res.AST.Children {
		if !strings.EqualFold(n.Value, "add") {
			continue
		}
		var args []string
		for a := n.Next; a != nil; a = a.Next {
			args = append(args, a.Value)
		}
		if len(args) < 2 {
			continue // the frontend refuses it
		}
		for _, src := range args[:len(args)-1] {
			switch {
			case strings.Contains(src, "$"):
				return fmt.Errorf("%w: %s line %d: ADD source %q has a variable, which might name a URL; use COPY", ErrNeedsNetwork, dockerfileRel, n.StartLine, src)
			case remoteSource(src):
				return fmt.Errorf("%w: %s line %d: ADD %s would be fetched by the engine", ErrNeedsNetwork, dockerfileRel, n.StartLine, src)
			}
		}
	}
	return nil
}

// remoteSource reports an ADD source that the engine fetches: a URL of
// any scheme or an scp-like git address (user@host:path).
func remoteSource(src string) bool {
	if strings.Contains(src, "://") {
		return true
	}
	at := strings.Index(src, "@")
	return at > 0 && strings.Contains(src[at:], ":")
}
