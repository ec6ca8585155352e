// Package console is the hub's operator console: a few server-rendered
// pages under /ui/ on the hub's HTTP listener, showing the fleet, the
// jobs this hub holds, a job's output live, and the queues; an admin can
// drain a worker and cancel a job from it (docs/console.md).
//
// The pieces, by file:
//
//   - console.go: Config, New, Run (the queue sampler), Shutdown, and the
//     routes. What the console shows and does comes through Config.Admin,
//     the hub's own AdminService called in-process, so the console has no
//     path of its own into the hub's state.
//   - session.go: login and sessions. A token typed into the login form
//     is checked once (Config.Auth, with the gRPC API's per-IP failure
//     limit); the browser then holds an HttpOnly, SameSite=Strict cookie
//     with the role, an expiry and the token's SHA-256, signed with a key
//     made at start. Every request checks that the token still logs in,
//     so rotating a token ends its sessions. Forms post a form key (an
//     HMAC of the cookie) besides the cookie.
//   - pages.go: the fleet, jobs, job and queues pages and their view
//     models. A page's "live" template is also served alone (?fragment=1)
//     for the browser's in-place refresh.
//   - actions.go: drain and cancel, for admin sessions only.
//   - logstream.go: a job's output as Server-Sent Events, read from
//     Config.Logs by cursor: the stream never holds the hub back, and a
//     reconnecting EventSource resumes at its Last-Event-ID.
//   - queues.go: the queue sampler's history and the SVG sparklines.
//   - templates/, static/: html/template pages, one stylesheet and one
//     script, embedded; nothing is fetched from elsewhere.
//
// Goroutines: Run is the sampler, owned by the hub. Each log stream runs
// in its request's goroutine and ends with its job, its client, or
// Shutdown. Locks: queueHistory.mu is a leaf.
package console
