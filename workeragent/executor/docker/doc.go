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
//   - push.go:     ImagePush, registry auth, digest capture
//   - logs.go:     the job's output: secret scrubbing and the bounded tail
//
// go-git picks HTTP transports from a process-wide table; New installs
// (once) a client for http and https whose RoundTripper enforces the
// per-clone byte bound. Requests of other go-git users pass unchanged.
//
// Every build is tagged with a per-job tag (<name>:blacktree-<random>);
// the target tag exists only while the push runs, under a per-reference
// lock, so concurrent jobs naming the same image push their own. After
// the job, only what it made is removed: its tags, and with the classic
// builder its intermediate images (never the base image a FROM names).
// BuildKit's cache stays for later jobs (docs/design/builder.md); the
// classic builder builds with NoCache.
//
// Goroutines: a BuildKit build runs the solve on the job's goroutine, plus
// the progress reader and the progress display, both ended before the
// build returns (Solve closes the status channel). A push runs
// go-containerregistry's uploaders, which remote.Write waits for. The cache pruner owns
// at most one goroutine at a time; Close cancels and waits for it. Lock
// order: lineWriter.mu before jobOutput.mu (whole lines are written under
// it); progress.mu, cachePruner.mu and keyedLock.mu are leaves.
//
// Untrusted input: everything in the JobRequest. The token never appears
// in a URL, a command line, a log line, an error, the response or the
// image: it reaches RUN steps only as a BuildKit secret, and output is
// scrubbed of it before it leaves the executor. The workspace is removed
// after every job, whatever its outcome.
package docker
