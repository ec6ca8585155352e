package docker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/docker/docker/client"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/tonistiigi/fsutil"
)

// Builder names, the values of Config.Builder (--builder).
const (
	// BuilderBuildKit builds with the BuildKit embedded in the Docker
	// engine (the default).
	BuilderBuildKit = "buildkit"
	// BuilderClassic builds with the engine's classic builder, for engines
	// without BuildKit.
	BuilderClassic = "classic"
)

// SecretID is the BuildKit secret id under which RUN steps find the job's
// githubToken (`RUN --mount=type=secret,id=GIT_AUTH_TOKEN`), the name
// BuildKit itself uses for git authentication.
const SecretID = "GIT_AUTH_TOKEN"

// ErrFrontendUnavailable is wrapped by the failure of a build whose
// Dockerfile names, on its `# syntax=` line, a frontend image that the
// engine could not pull.
var ErrFrontendUnavailable = errors.New("Dockerfile frontend image not available")

// newBuildKitClient returns a BuildKit client that reaches the BuildKit
// embedded in the engine behind docker, the way buildx's docker driver
// does: gRPC over the hijacked Engine API endpoint /grpc (h2c), sessions
// over /session. It does no I/O until the first call.
func newBuildKitClient(docker *client.Client) (*bkclient.Client, error) {
	return bkclient.New(context.Background(), "",
		bkclient.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return docker.DialHijack(ctx, "/grpc", "h2c", nil)
		}),
		bkclient.WithSessionDialer(func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
			return docker.DialHijack(ctx, "/session", proto, meta)
		}),
	)
}

// networkAttrs maps Config.BuildNetwork onto the Dockerfile frontend's
// attributes. BuildKit knows no named networks: only none, host and the
// default one.
func networkAttrs(network string) (map[string]string, error) {
	switch network {
	case "", "default", "bridge":
		return nil, nil
	case "none":
		return map[string]string{"force-network-mode": "none"}, nil
	default:
		return nil, fmt.Errorf("build network %q is not supported by the BuildKit builder (none or the default; --builder classic takes named networks)", network)
	}
}

// buildKitJob is what a BuildKit build of one job needs besides its paths.
type buildKitJob struct {
	client     *bkclient.Client
	token      string            // exposed to RUN steps as secret SecretID only
	attrs      map[string]string // extra frontend attributes (network)
	buildArgs  map[string]string // the job's buildArgs, validated
	maxContext int64
}

// buildKit builds the job's image with BuildKit and stores it in the
// engine's image store under the job tag (the moby exporter: engines
// before 23 have no image exporter, and it ignores push, so push.go pushes
// afterwards). Progress goes to the job's output in BuildKit's plain form.
// The steps it returns count the Dockerfile's steps, cached or run.
func (b *buildRun) buildKit(ctx context.Context, j buildKitJob, r resolvedPaths) (stepCount, error) {
	b.newJobTag()
	contextFS, err := fsutil.NewFS(r.contextDir)
	if err != nil {
		return stepCount{}, fmt.Errorf("reading context: %w", unwrapPathError(err))
	}
	// .git never enters the context (as with the classic builder); the
	// frontend applies .dockerignore itself.
	contextFS, err = fsutil.NewFilterFS(contextFS, &fsutil.FilterOpt{ExcludePatterns: []string{".git", "**/.git"}})
	if err != nil {
		return stepCount{}, err
	}
	// An oversized context cancels the solve: the session would otherwise
	// wait for the context it failed to send.
	solveCtx, cancelSolve := context.WithCancelCause(ctx)
	defer cancelSolve(nil)
	bounded := &boundedFS{FS: contextFS, max: j.maxContext, onExceed: cancelSolve}
	dockerfileFS, err := fsutil.NewFS(filepath.Dir(r.dockerfile))
	if err != nil {
		return stepCount{}, fmt.Errorf("reading Dockerfile: %w", unwrapPathError(err))
	}
	attrs := map[string]string{"filename": filepath.Base(r.dockerfile)}
	for k, v := range j.buildArgs {
		attrs["build-arg:"+k] = v
	}
	for k, v := range j.attrs {
		attrs[k] = v
	}
	var attachables []session.Attachable
	if j.token != "" {
		attachables = append(attachables, secretsprovider.FromMap(map[string][]byte{SecretID: []byte(j.token)}))
	}
	opt := bkclient.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts: map[string]fsutil.FS{
			"context":    bounded,
			"dockerfile": dockerfileFS,
		},
		Session: attachables,
		// A key of the job's own: solves sharing a key share the engine's
		// copy of "context", and concurrent jobs could build from each
		// other's files. Every job has a fresh clone, so nothing is lost.
		SharedKey: b.jobTag,
		Exports: []bkclient.ExportEntry{{
			Type:  "moby",
			Attrs: map[string]string{"name": b.jobTag},
		}},
	}

	b.out.printf("build: BuildKit, context %s, Dockerfile %s\n", r.contextRel, r.dockerfileRel)
	status := make(chan *bkclient.SolveStatus)
	prog := newProgress(b.out)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		prog.run(status) // returns once Solve closes status
	}()
	_, solveErr := j.client.Solve(solveCtx, nil, opt, status)
	wg.Wait()
	steps := prog.steps()
	if solveErr == nil {
		b.out.printf("build: built %s (%d of %d steps cached)\n", b.jobTag, steps.cached, steps.total)
		return steps, nil
	}
	switch {
	case bounded.exceeded():
		return steps, fmt.Errorf("%w: more than %d bytes", ErrContextTooLarge, j.maxContext)
	case ctx.Err() != nil:
		return steps, ctx.Err()
	}
	if name, failed := prog.failedStep(); failed {
		instruction := dockerfileStepRe.ReplaceAllString(name, "$1")
		line := sourceLine(solveErr)
		if line == 0 {
			line = instructionLine(r.dockerfile, instruction)
		}
		if line > 0 {
			return steps, fmt.Errorf("Dockerfile line %d (%s): %w", line, instruction, solveErr)
		}
		return steps, fmt.Errorf("step %s: %w", name, solveErr)
	}
	// The frontend a `# syntax=` line names runs as gateway.v0; a failure
	// to fetch it shows there, before any step of the Dockerfile.
	msg := solveErr.Error()
	if syntax := syntaxDirective(r.dockerfile); syntax != "" && (strings.Contains(msg, "gateway.v0") || strings.Contains(msg, syntax)) {
		return steps, fmt.Errorf("%w: %q (from the Dockerfile's `# syntax=` line) could not be pulled by the engine: %w", ErrFrontendUnavailable, syntax, solveErr)
	}
	if !prog.started() {
		return steps, fmt.Errorf("engine refused the build: %w", solveErr)
	}
	return steps, solveErr
}

// sourceLine is the Dockerfile line a solve error points at (BuildKit
// attaches source locations to step errors), 0 when it names none.
func sourceLine(err error) int {
	for _, src := range errdefs.Sources(err) {
		for _, r := range src.GetRanges() {
			if l := r.GetStart().GetLine(); l > 0 {
				return int(l)
			}
		}
	}
	return 0
}

// syntaxDirective returns the frontend image a Dockerfile names on a
// leading `# syntax=` parser directive, "" if none.
func syntaxDirective(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) > maxDockerfileBytes {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			return "" // directives only precede the first instruction
		}
		key, value, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), "=")
		if !ok {
			return "" // a comment ends the directives
		}
		if strings.EqualFold(strings.TrimSpace(key), "syntax") {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// boundedFS is a build context that fails once more than max bytes of file
// content have been read from it.
type boundedFS struct {
	fsutil.FS
	max      int64
	onExceed context.CancelCauseFunc
	read     atomic.Int64
	over     atomic.Bool
}

func (f *boundedFS) Open(p string) (io.ReadCloser, error) {
	rc, err := f.FS.Open(p)
	if err != nil {
		return nil, err
	}
	return &boundedReader{ReadCloser: rc, fs: f}, nil
}

func (f *boundedFS) exceeded() bool { return f.over.Load() }

type boundedReader struct {
	io.ReadCloser
	fs *boundedFS
}

func (r *boundedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if r.fs.read.Add(int64(n)) > r.fs.max {
		r.fs.over.Store(true)
		r.fs.onExceed(ErrContextTooLarge)
		return n, fmt.Errorf("%w: more than %d bytes", ErrContextTooLarge, r.fs.max)
	}
	return n, err
}
