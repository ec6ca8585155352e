// Package docker is the docker build executor (`--executor docker`): for
// each job it clones the repository (go-git, shallow, single branch, the
// githubToken as HTTP basic-auth password), checks the requested paths on
// disk, builds the image through the Docker Engine API, pushes it with
// credentials from the docker config / credential helpers, and reports a
// JobResponse.
//
// Files by concern:
//
//   - executor.go: Config, New, Run (the job pipeline, timeouts, cleanup)
//   - source.go:   repoUrl resolution and the bounded clone
//   - paths.go:    contextDir / dockerfilePath checks, before and after clone
//   - context.go:  the build-context tar (bounded, .git skipped)
//   - ignore.go:   .dockerignore, with the docker CLI's rules
//   - build.go:    ImageBuild and the build message stream
//   - push.go:     ImagePush, registry auth, digest capture
//   - logs.go:     the job's output: secret scrubbing and the bounded tail
//
// go-git picks HTTP transports from a process-wide table; New installs
// (once) a client for http and https whose RoundTripper enforces the
// per-clone byte bound. Requests of other go-git users pass unchanged.
//
// Builds use the classic builder (API build version 1) with NoCache, and
// are tagged with a per-job tag; the target tag exists only while the push
// runs, under a per-reference lock, so concurrent jobs naming the same
// image push their own.
//
// Untrusted input: everything in the JobRequest. The token never appears
// in a URL, a command line, a log line, an error or the response; output is
// scrubbed of it before it leaves the executor. The workspace and the built
// image are removed after every job, whatever its outcome.
package docker
