package workeragent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/workeragent/executor"
	"github.com/blacktree/blacktree/workeragent/fakehub"
)

// cacheExec builds nothing: a job on branch "bad-clone" fails at CLONE,
// one on "bad-build" at BUILD, the rest succeed. As an
// executor.CacheInspector it reports its images and a size that grows
// with each call.
type cacheExec struct {
	mu     sync.Mutex // guards the following
	images []string
	size   uint64
	asked  int
}

func (c *cacheExec) Name() string { return "cache" }

func (c *cacheExec) Run(_ context.Context, req *blacktreev1.JobRequest, _ io.Writer) *blacktreev1.JobResponse {
	switch req.GetBranch() {
	case "bad-clone":
		return jobspec.Failed(req.GetJobId(), blacktreev1.JobStage_JOB_STAGE_CLONE, errors.New("no such repository"))
	case "bad-build":
		return jobspec.Failed(req.GetJobId(), blacktreev1.JobStage_JOB_STAGE_BUILD, errors.New("step 2 failed"))
	}
	return &blacktreev1.JobResponse{JobId: req.GetJobId(), Success: true, ImageUrl: req.GetImageName(), CachedSteps: 1, TotalSteps: 2}
}

func (c *cacheExec) CacheState(context.Context) ([]string, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked++
	c.size += 1000
	return slices.Clone(c.images), c.size, nil
}

func (c *cacheExec) setImages(images ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.images = images
}

// repoJob is a job of repository repo on branch.
func repoJob(id, repo, branch string) *blacktreev1.JobRequest {
	r := jobReq(id)
	r.RepoUrl, r.Branch = repo, branch
	return r
}

// runToResult sends a RunJob, waits for its JobResult and acks it; it
// returns the summary of the last Heartbeat before the result that
// carried one (nil if none).
func runToResult(t *testing.T, s *fakehub.Stream, req *blacktreev1.JobRequest) *blacktreev1.CacheSummary {
	t.Helper()
	s.Send(t, fakehub.RunJob(req))
	var cs *blacktreev1.CacheSummary
	s.WaitFor(t, wait, "JobResult "+req.GetJobId(), func(m *blacktreev1.WorkerMessage) bool {
		if c := m.GetHeartbeat().GetCache(); c != nil {
			cs = c
		}
		return fakehub.IsResult(req.GetJobId())(m)
	})
	s.Send(t, fakehub.Ack(req.GetJobId()))
	return cs
}

// A build's key reaches the hub in a Heartbeat before the job's result,
// newest first; a job that never reached the build adds none; the keys
// survive a restart and go in the next Register.
func TestCacheKeysPersistAcrossRestart(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
	dir := t.TempDir()
	cfg := Config{HubAddrs: []string{hub.Addr}, StateDir: dir}
	a, b := repoJob("a", "owner/a", "main"), repoJob("b", "owner/b", "main")
	keyA, keyB := jobspec.CacheKey(a), jobspec.CacheKey(b)

	r1 := startAgent(t, cfg, &cacheExec{})
	s1 := hub.NextStream(t, wait)
	if got := s1.Register.GetCache(); got == nil || len(got.GetBuildKeys()) != 0 {
		t.Fatalf("first Register.cache = %v, want an empty summary", got)
	}
	if cs := runToResult(t, s1, a); !slices.Equal(cs.GetBuildKeys(), []string{keyA}) {
		t.Fatalf("heartbeat before a's result carries keys %v, want [a's key]", cs.GetBuildKeys())
	}
	if cs := runToResult(t, s1, b); !slices.Equal(cs.GetBuildKeys(), []string{keyB, keyA}) {
		t.Fatalf("heartbeat before b's result carries keys %v, want [b's, a's]", cs.GetBuildKeys())
	}
	// The same repository on another branch is the same key: nothing new.
	if cs := runToResult(t, s1, repoJob("b2", "owner/b", "feature")); cs != nil {
		t.Errorf("heartbeat before b2's result carries %v, want none (b's key is already the newest)", cs)
	}
	// Failed before the build: no key. Failed in it: its key counts.
	if cs := runToResult(t, s1, repoJob("c", "owner/c", "bad-clone")); cs != nil {
		t.Errorf("heartbeat before c's result (failed at clone) carries %v, want none", cs)
	}
	d := repoJob("d", "owner/d", "bad-build")
	if cs := runToResult(t, s1, d); !slices.Equal(cs.GetBuildKeys(), []string{jobspec.CacheKey(d), keyB, keyA}) {
		t.Errorf("heartbeat before d's result (failed in the build) carries keys %v, want [d's, b's, a's]", cs.GetBuildKeys())
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r1.agent.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}

	if b, err := os.ReadFile(filepath.Join(dir, cacheKeysFile)); err != nil || len(b) == 0 {
		t.Errorf("cache keys file after shutdown: %q, %v; want the keys", b, err)
	}
	startAgent(t, cfg, executor.Noop{})
	s2 := hub.NextStream(t, wait)
	if got, want := s2.Register.GetCache().GetBuildKeys(), []string{jobspec.CacheKey(d), keyB, keyA}; !slices.Equal(got, want) {
		t.Errorf("Register.cache.build_keys after restart = %v, want %v", got, want)
	}
}

// The state directory keeps at most maxCacheKeys keys, newest first, and
// a damaged file costs only its bad lines.
func TestBuildCacheBounds(t *testing.T) {
	dir := t.TempDir()
	c, err := openBuildCache(dir)
	if err != nil {
		t.Fatalf("openBuildCache() = %v", err)
	}
	for i := range maxCacheKeys + 6 {
		c.recordBuild(fmt.Sprintf("key-%03d", i))
	}
	if err := c.saveKeys(); err != nil {
		t.Fatalf("saveKeys() = %v", err)
	}
	cs, _ := c.summaryAfter(0)
	if n := len(cs.GetBuildKeys()); n != maxCacheKeys || cs.GetBuildKeys()[0] != fmt.Sprintf("key-%03d", maxCacheKeys+5) {
		t.Errorf("keys = %d, newest %q, want %d, newest key-%03d", n, cs.GetBuildKeys()[0], maxCacheKeys, maxCacheKeys+5)
	}
	if added, changed := c.recordBuild(fmt.Sprintf("key-%03d", maxCacheKeys+5)); added || changed {
		t.Errorf("recordBuild(the newest) = %v, %v, want no change", added, changed)
	}
	if added, changed := c.recordBuild("key-002"); !added || !changed {
		t.Errorf("recordBuild(an evicted key) = %v, %v, want added", added, changed)
	}
	if added, changed := c.recordBuild("key-050"); added || !changed {
		t.Errorf("recordBuild(an older key) = %v, %v, want moved, not added", added, changed)
	}

	reopened, err := openBuildCache(dir)
	if err != nil {
		t.Fatalf("openBuildCache() = %v", err)
	}
	if !slices.Equal(reopened.keys, cs.GetBuildKeys()) {
		t.Errorf("keys after reopening = %v, want the saved %v", reopened.keys, cs.GetBuildKeys())
	}

	bad := "good-1\n\n" + strings.Repeat("x", maxBuildKeyLen+1) + "\ngood-1\ngood-2"
	if err := os.WriteFile(filepath.Join(dir, cacheKeysFile), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	damaged, err := openBuildCache(dir)
	if err != nil {
		t.Fatalf("openBuildCache(damaged) = %v", err)
	}
	if want := []string{"good-1", "good-2"}; !slices.Equal(damaged.keys, want) {
		t.Errorf("keys from a damaged file = %v, want %v", damaged.keys, want)
	}
}

// With an executor.CacheInspector the summary carries its base images
// and size: a new base image goes to the hub at once, a size change with
// the next heartbeat.
func TestCacheInspector(t *testing.T) {
	hub := fakehub.Start(t, fakehub.Options{HeartbeatInterval: time.Hour})
	ex := &cacheExec{}
	ex.setImages("local/busybox:1")
	startAgent(t, Config{HubAddrs: []string{hub.Addr}}, ex, func(a *Agent) { a.inspectGap = 10 * time.Millisecond })
	s := hub.NextStream(t, wait)
	// Asked at start; Register may or may not have the answer yet, a
	// heartbeat follows when it did not.
	if got := s.Register.GetCache().GetBaseImages(); !slices.Equal(got, []string{"local/busybox:1"}) {
		s.WaitFor(t, wait, "heartbeat with the base images", func(m *blacktreev1.WorkerMessage) bool {
			return slices.Equal(m.GetHeartbeat().GetCache().GetBaseImages(), []string{"local/busybox:1"})
		})
	}

	ex.setImages("debian:12", "local/busybox:1")
	// Asked after the job: the answer may overtake the result.
	cs := runToResult(t, s, repoJob("j1", "owner/a", "main"))
	if !slices.Contains(cs.GetBaseImages(), "debian:12") {
		cs = s.WaitFor(t, wait, "heartbeat with the new base image", func(m *blacktreev1.WorkerMessage) bool {
			return slices.Contains(m.GetHeartbeat().GetCache().GetBaseImages(), "debian:12")
		}).GetHeartbeat().GetCache()
	}
	if cs.GetSizeBytes() == 0 || len(cs.GetBuildKeys()) != 1 {
		t.Errorf("summary = %v, want a size and j1's key", cs)
	}
	ex.mu.Lock()
	asked := ex.asked
	ex.mu.Unlock()
	if asked < 2 {
		t.Errorf("CacheState asked %d times, want at start and after the job", asked)
	}
}
