package console

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/auth"
)

// Prefix is the path the console is served under.
const Prefix = "/ui/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Authenticator checks the tokens typed into the login form and whether a
// session's token is still valid. *auth.Authenticator implements it.
type Authenticator interface {
	// ConsoleEnabled reports whether any token can log in.
	ConsoleEnabled() bool
	// ConsoleLogin checks a token from the peer ip: its role
	// (auth.ConsoleAdmin or auth.ConsoleViewer) and digest, or
	// auth.ErrConsoleDenied or auth.ErrConsoleLimited.
	ConsoleLogin(ip, secret string) (string, auth.ConsoleDigest, error)
	// ConsoleRole returns the current role of the token with digest d,
	// "" when it no longer logs in.
	ConsoleRole(d auth.ConsoleDigest) string
}

// Logs gives the recent output of the jobs the hub runs, by cursor.
type Logs interface {
	// LogSince returns the job's output after cursor (a count of chunks
	// from the job's first here); false when the hub keeps none for it.
	LogSince(jobID string, cursor uint64) (LogPage, bool)
}

// LogPage is a job's output after a cursor.
type LogPage struct {
	// Chunks are the output chunks after the cursor, oldest first.
	Chunks []string
	// Skipped counts chunks after the cursor that are no longer kept.
	Skipped uint64
	// Next is the cursor after Chunks.
	Next uint64
	// End is set once the job's output here has ended.
	End *LogEnd
	// Changed is closed at the job's next chunk or end.
	Changed <-chan struct{}
}

// LogEnd is how a job's output on this hub ended.
type LogEnd struct {
	// Finished: the job's status was published. Otherwise the job left
	// this hub without one here (requeued, or moved to another hub).
	Finished bool
	// Success, Stage and Error are the status's.
	Success bool
	Stage   string
	Error   string
}

// QueueDepth is one queue's depth.
type QueueDepth struct {
	// Name is the queue's name.
	Name string
	// Ready is the messages ready for delivery, as the broker counts them.
	Ready int
	// Unacked is the deliveries this hub holds unacknowledged; -1 for
	// queues the hub does not consume.
	Unacked int
}

// Config configures a Console.
type Config struct {
	// Admin answers the console's questions and actions: the hub's own
	// AdminService, called in-process, so a drain or cancel from the
	// console takes the same path as one from btctl.
	Admin blacktreev1.AdminServiceServer
	// Auth checks logins and sessions.
	Auth Authenticator
	// Logs gives running jobs' output; nil: job pages show no output.
	Logs Logs
	// Queues counts the hub's queues; nil: no queue view.
	Queues func(ctx context.Context) ([]QueueDepth, error)
	// HubID names the hub in the page header.
	HubID string
	// SampleEvery is how often the queues are sampled for the sparklines
	// (default 10 s); SparklinePoints how many samples are kept (default
	// 60: ten minutes).
	SampleEvery     time.Duration
	SparklinePoints int
	// SessionTTL is how long a login lasts (default 12 h).
	SessionTTL time.Duration
	// PollEvery is how often an open page refreshes its live part
	// (default 2 s).
	PollEvery time.Duration
}

// Console is the operator console: an http.Handler under Prefix and the
// goroutine that samples queue depths.
type Console struct {
	cfg       Config
	log       hclog.Logger
	pages     map[string]*template.Template
	static    http.Handler
	key       []byte // signs session cookies and form keys; per process
	queueHist *queueHistory
	streams   chan struct{} // a token per open log stream (maxLogStreams)

	done     chan struct{} // closed by Shutdown: ends log streams and Run
	stopOnce sync.Once
}

// New builds a Console. It does no I/O.
func New(cfg Config, logger hclog.Logger) (*Console, error) {
	if cfg.Admin == nil || cfg.Auth == nil {
		return nil, errors.New("console: Admin and Auth are required")
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 10 * time.Second
	}
	if cfg.SparklinePoints <= 1 {
		cfg.SparklinePoints = 60
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 2 * time.Second
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &Console{
		cfg:       cfg,
		log:       logger,
		pages:     pages,
		static:    http.StripPrefix(Prefix+"static/", http.FileServer(http.FS(static))),
		key:       key,
		queueHist: newQueueHistory(cfg.SparklinePoints),
		streams:   make(chan struct{}, maxLogStreams),
		done:      make(chan struct{}),
	}, nil
}

// Run samples the queues every Config.SampleEvery until ctx ends or
// Shutdown is called.
func (c *Console) Run(ctx context.Context) {
	if c.cfg.Queues == nil {
		return
	}
	tick := time.NewTicker(c.cfg.SampleEvery)
	defer tick.Stop()
	for {
		c.sampleQueues(ctx)
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-c.done:
			return
		}
	}
}

// Shutdown ends the open log streams (so that the HTTP server's own
// shutdown does not wait for them) and Run. Idempotent.
func (c *Console) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.done) })
	return nil
}

// Handler serves the console under Prefix.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"static/", c.static)
	mux.HandleFunc("GET "+Prefix+"login", c.loginPage)
	mux.HandleFunc("POST "+Prefix+"login", c.login)
	mux.HandleFunc("POST "+Prefix+"logout", c.withSession(c.logout))
	mux.HandleFunc("GET "+Prefix+"{$}", c.withSession(c.fleetPage))
	mux.HandleFunc("GET "+Prefix+"jobs", c.withSession(c.jobsPage))
	mux.HandleFunc("GET "+Prefix+"jobs/{id}", c.withSession(c.jobPage))
	mux.HandleFunc("GET "+Prefix+"jobs/{id}/log", c.withSession(c.jobLog))
	mux.HandleFunc("GET "+Prefix+"queues", c.withSession(c.queuesPage))
	mux.HandleFunc("POST "+Prefix+"workers/{id}/drain", c.withSession(c.drain))
	mux.HandleFunc("POST "+Prefix+"jobs/{id}/cancel", c.withSession(c.cancel))
	return securityHeaders(mux)
}

// securityHeaders sets the headers every console response carries: no
// script, style or frame from elsewhere, no caching of pages, no referrer.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
