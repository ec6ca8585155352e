package workeragent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/workeragent/executor"
)

// The agent's build cache as the hub sees it (CacheSummary): the build
// keys (jobspec.CacheKey) of the builds it ran most recently, which it
// keeps in the state directory because the engine's cache outlives the
// agent, and what the executor says its cache holds (base images, bytes),
// when it is an executor.CacheInspector.
//
// When the summary reaches the hub: in every Register; and in a Heartbeat
// when it changed since the session's last. A change of the set of build
// keys or base images is sent at once: a build's new key goes in a
// Heartbeat queued before the job's JobResult, so the hub knows the cache
// is warm before the control plane sees the result and publishes the next
// build. A change of order or size alone waits for the next heartbeat.

const (
	// cacheKeysFile in the state directory holds the build keys, one a
	// line, newest first.
	cacheKeysFile = "cache-keys"
	// maxCacheKeys and maxBaseImages bound the summary as the hub does
	// (worker.proto, CacheSummary).
	maxCacheKeys    = 64
	maxBuildKeyLen  = 64
	maxBaseImages   = 64
	maxBaseImageLen = 256
	// cacheInspectTimeout bounds one executor.CacheInspector call.
	cacheInspectTimeout = 10 * time.Second
	// cacheInspectGap is the least time between the starts of two calls:
	// asking an engine for its disk usage is not free, and a worker
	// finishing short jobs back to back would otherwise ask without a
	// pause. The hub places by build keys, which never wait for it.
	cacheInspectGap = 5 * time.Second
)

// buildCache is the agent's cache summary. Guarded by mu; writeMu
// serialises writes of the keys file and is taken before mu.
type buildCache struct {
	dir string // the state directory; "" keeps the keys in memory only

	writeMu sync.Mutex // serialises saveKeys; guards written
	written uint64     // keysGen the file holds

	mu      sync.Mutex // guards the following
	keys    []string   // newest first, at most maxCacheKeys
	keysGen uint64     // bumped when keys change
	images  []string   // sorted, from the executor
	size    uint64     // from the executor
	version uint64     // bumped when anything above changes; from 1, so a session's 0 means none sent
}

// openBuildCache loads the keys an earlier run kept in dir. A missing
// file is an empty cache; lines that are not keys are skipped.
func openBuildCache(dir string) (*buildCache, error) {
	c := &buildCache{dir: dir, version: 1}
	if dir == "" {
		return c, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, cacheKeysFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("state dir: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		k := strings.TrimSpace(line)
		if k != "" && len(k) <= maxBuildKeyLen && !slices.Contains(c.keys, k) && len(c.keys) < maxCacheKeys {
			c.keys = append(c.keys, k)
		}
	}
	return c, nil
}

// recordBuild makes key the newest build key. added reports whether the
// set of keys changed (key is new); changed whether anything did.
func (c *buildCache) recordBuild(key string) (added, changed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.keys, key)
	switch {
	case i == 0:
		return false, false
	case i > 0:
		c.keys = slices.Delete(c.keys, i, i+1)
	default:
		added = true
		if len(c.keys) == maxCacheKeys {
			c.keys = c.keys[:maxCacheKeys-1]
		}
	}
	c.keys = slices.Insert(c.keys, 0, key)
	c.keysGen++
	c.version++
	return added, true
}

// setState records what the executor said its cache holds. urgent
// reports whether the set of base images changed.
func (c *buildCache) setState(images []string, size uint64) (urgent bool) {
	images = boundImages(images)
	c.mu.Lock()
	defer c.mu.Unlock()
	urgent = !slices.Equal(images, c.images)
	if urgent || size != c.size {
		c.images, c.size = images, size
		c.version++
	}
	return urgent
}

// boundImages sorts the executor's base images and keeps the first
// maxBaseImages distinct, non-empty names within maxBaseImageLen.
func boundImages(in []string) []string {
	out := make([]string, 0, min(len(in), maxBaseImages))
	for _, v := range in {
		if v != "" && len(v) <= maxBaseImageLen {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return out[:min(len(out), maxBaseImages)]
}

// summaryAfter returns the summary and its version when the version is
// not sent (a session's last sent one), else nil.
func (c *buildCache) summaryAfter(sent uint64) (*blacktreev1.CacheSummary, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version == sent {
		return nil, sent
	}
	return &blacktreev1.CacheSummary{
		BuildKeys:  slices.Clone(c.keys),
		BaseImages: slices.Clone(c.images),
		SizeBytes:  c.size,
	}, c.version
}

// saveKeys writes the keys to the state directory when they changed since
// the last write.
func (c *buildCache) saveKeys() error {
	if c.dir == "" {
		return nil
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	gen, keys := c.keysGen, slices.Clone(c.keys)
	c.mu.Unlock()
	if gen == c.written {
		return nil
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('\n')
	}
	if err := writeFileAtomic(filepath.Join(c.dir, cacheKeysFile), []byte(b.String())); err != nil {
		return fmt.Errorf("persist cache keys: %w", err)
	}
	c.written = gen
	return nil
}

// reachedBuild reports whether a job's build ran, in whole or in part, so
// that the builder's cache now holds its layers.
func reachedBuild(resp *blacktreev1.JobResponse) bool {
	switch resp.GetFailedStage() {
	case blacktreev1.JobStage_JOB_STAGE_BUILD, blacktreev1.JobStage_JOB_STAGE_PUSH:
		return true
	}
	return resp.GetSuccess()
}

// afterBuild runs once a job's result is on its way: it writes the build
// keys if they changed and asks the executor's cache for its state.
func (a *Agent) afterBuild(j *job, changed bool) {
	if changed {
		if err := a.cache.saveKeys(); err != nil {
			j.log.Warn("cache keys kept in memory only", "error", err)
		}
	}
	select {
	case a.inspectKick <- struct{}{}:
	default:
	}
}

// inspectCacheLoop asks the executor for its cache's state at start and
// after builds finish (inspectKick; kicks meanwhile fold into one more
// ask), each ask bounded by cacheInspectTimeout and at least gap after the
// previous one, until ctx ends. A change of the base images is sent to the
// hub at once. Run owns it.
func (a *Agent) inspectCacheLoop(ctx context.Context, inspector executor.CacheInspector, gap time.Duration, log hclog.Logger) {
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
		pause.Reset(gap) // drained above: the next ask waits for it
		ictx, cancel := context.WithTimeout(ctx, cacheInspectTimeout)
		images, size, err := inspector.CacheState(ictx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("cannot read the build cache's state", "error", err)
		case a.cache.setState(images, size):
			log.Debug("build cache's base images changed", "base_images", len(images), "bytes", size)
			select {
			case a.hbKick <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.inspectKick:
		}
	}
}
