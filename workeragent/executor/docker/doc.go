// Package docker is the docker build executor (`--executor docker`): for
// each job it clones the repository (go-git, shallow, single branch, the
// githubToken as HTTP basic-auth password), checks the requested paths on
// disk, builds the image with the Docker engine, pushes it with
// credentials from the docker config / credential helpers, and reports a
// JobResponse.
//
// Files by concern:
//
//   - executor.go: Config, New, Run (the job pipeline, timeouts, cleanup)
//   - source.go:   repoUrl resolution and the bounded clone
//   - egress.go:   where a clone may connect: redirect targets, and the
//     address checked at connect time (private ranges refused)
//   - paths.go:    contextDir / dockerfilePath checks, before and after clone
//   - buildkit.go: the BuildKit builder (the default): the engine's embedded
//     BuildKit over the Engine API, the solve, the token as secret
//     GIT_AUTH_TOKEN, the bounded context, step errors
//   - progress.go: BuildKit's plain progress into the job's output; cached
//     and total step counts; the failed step
//   - cache.go:    CacheState (executor.CacheInspector) and the pruner that
//     keeps the engine's build cache under Config.CacheMaxSize
//   - build.go:    the classic builder (--builder classic): ImageBuild, its
//     message stream, removal of its images; Dockerfile instruction lines
//   - context.go:  the classic builder's context tar (bounded, .git skipped)
//   - ignore.go:   .dockerignore for the classic builder, with the docker
//     CLI's rules (BuildKit's Dockerfile frontend applies it itself)
//   - push.go:     the push: the job image saved out of the engine and
//     written to the registry by go-containerregistry
//   - dockerfile.go: the pre-build scan of the Dockerfile (ADD <url>
//     refused when builds have no network)
//   - logs.go:     the job's output: secret scrubbing, its bounded head
//     and tail
//   - lines.go:    lineSplitter, output into lines for logs.go, a line cut
//     at maxLineBytes so an endless one costs flat memory
//
// go-git picks HTTP transports from a process-wide table; New installs
// (once) a client for http and https whose RoundTripper sends a clone's
// requests through its executor's own transport (gitEgress: the dialer
// refuses loopback, private, link-local and metadata addresses just
// before connecting, unless AllowPrivateGitHosts) and enforces the
// per-clone byte bound, and whose CheckRedirect keeps redirects on
// allowed hosts. Requests of other go-git users pass unchanged.
//
// Every build is tagged with a worker-private job tag
// (blacktree.invalid/job:blacktree-<random>); the job's imageName never
// names an image on the engine, so no job's FROM can build on another
// job's image, and concurrent jobs naming the same image push their own.
// The push goes straight from the saved image to the target (push.go).
// Pushes go only under the worker's push scope (Config.Registry and
// AllowedPushPrefixes, jobspec.PushScope), checked before the clone.
// After the job, only what it made is removed: its tag, and with the
// classic builder its intermediate images (never the base image a FROM
// names).
// BuildKit's cache stays for later jobs (docs/design/builder.md); the
// classic builder builds with NoCache.
//
// Goroutines: a BuildKit build runs the solve on the job's goroutine, plus
// the progress reader and the progress display, both ended before the
// build returns (Solve closes the status channel). A push runs
// go-containerregistry's uploaders, which remote.Write waits for. The cache pruner owns
// at most one goroutine at a time; Close cancels and waits for it. Lock
// order: lineWriter.mu before jobOutput.mu (whole lines are written under
// it); progress.mu, cachePruner.mu, keyedLock.mu and gitEgress.mu are
// leaves.
//
// Untrusted input: everything in the JobRequest. The token never appears
// in a URL, a command line, a log line, an error, the response or the
// image: it reaches RUN steps only as a BuildKit secret, and output is
// scrubbed of it before it leaves the executor. The workspace is removed
// after every job, whatever its outcome.
package docker
