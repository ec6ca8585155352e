package docker

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"

	"github.com/blacktree/blacktree/workeragent/executor"
)

// DefaultCacheMaxSize bounds the engine's build cache when
// Config.CacheMaxSize is zero.
const DefaultCacheMaxSize = 20 << 30

// pruneTimeout bounds one prune of the build cache.
const pruneTimeout = 5 * time.Minute

// Every image a job builds is tagged jobRepo:jobTagPrefix<random>; such
// images are the job's own, never a base image. The `.invalid` top-level
// domain never resolves, so no registry can serve or take that name.
const (
	jobRepo      = "blacktree.invalid/job"
	jobTagPrefix = "blacktree-"
)

var _ executor.CacheInspector = (*Executor)(nil)

// isJobTag reports a tag a job made: the private job tag, or the
// <imageName>:blacktree-<random> form earlier versions used, which an
// upgraded worker's engine may still hold.
func isJobTag(tag string) bool {
	return strings.HasPrefix(tag, jobRepo+":") || strings.Contains(tag, ":"+jobTagPrefix)
}

// CacheState implements executor.CacheInspector: the tagged images in the
// engine (the base images later builds can start FROM without a pull; the
// images jobs are building are left out) and the bytes of the engine's
// build cache.
func (e *Executor) CacheState(ctx context.Context) ([]string, uint64, error) {
	images, err := e.docker.ImageList(ctx, image.ListOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("listing the engine's images: %w", err)
	}
	var names []string
	for _, im := range images {
		for _, t := range im.RepoTags {
			if t == "<none>:<none>" || isJobTag(t) {
				continue
			}
			names = append(names, t)
		}
	}
	sort.Strings(names)
	du, err := e.docker.DiskUsage(ctx, types.DiskUsageOptions{Types: []types.DiskUsageObject{types.BuildCacheObject}})
	if err != nil {
		return names, 0, fmt.Errorf("reading the engine's build cache usage: %w", err)
	}
	var size uint64
	for _, r := range du.BuildCache {
		if r != nil && r.Size > 0 && !r.Shared {
			size += uint64(r.Size)
		}
	}
	return names, size, nil
}

// cachePruner keeps the engine's build cache under a size, least recently
// used first, with the engine's own prune (BuildKit's keep-storage). It
// runs after jobs, off their path: a request while a prune runs makes one
// more run after it, never a queue. It owns at most one goroutine, which
// close waits for.
type cachePruner struct {
	prune  func(context.Context) error
	log    hclog.Logger
	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards the following
	running bool
	again   bool
	closed  bool
}

// newCachePruner returns a pruner that runs prune; engineCachePrune is
// the one the executor uses.
func newCachePruner(prune func(context.Context) error, log hclog.Logger) *cachePruner {
	ctx, cancel := context.WithCancel(context.Background())
	return &cachePruner{prune: prune, log: log, ctx: ctx, cancel: cancel}
}

// request asks for a prune soon; it never blocks.
func (p *cachePruner) request() {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
	case p.running:
		p.again = true
	default:
		p.running = true
		p.wg.Add(1)
		go p.loop()
	}
}

func (p *cachePruner) loop() {
	defer p.wg.Done()
	for {
		if err := p.prune(p.ctx); err != nil && p.ctx.Err() == nil {
			p.log.Warn("pruning the build cache", "error", err)
		}
		p.mu.Lock()
		if !p.again || p.closed {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.again = false
		p.mu.Unlock()
	}
}

// engineCachePrune returns a prune of the engine's build cache, least
// recently used first, until what is left fits in maxSize. Images (the
// base images among them) are not build cache: the engine keeps them and
// the layers they hold.
func engineCachePrune(docker *client.Client, maxSize int64, log hclog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, pruneTimeout)
		defer cancel()
		start := time.Now()
		rep, err := docker.BuildCachePrune(ctx, build.CachePruneOptions{
			All:          true,
			KeepStorage:  maxSize, // engines before API 1.48
			MaxUsedSpace: maxSize, // engines from API 1.48
		})
		if err != nil {
			return fmt.Errorf("build cache prune: %w", err)
		}
		log.Debug("build cache pruned", "reclaimed_bytes", rep.SpaceReclaimed, "records", len(rep.CachesDeleted), "took", time.Since(start))
		return nil
	}
}

// close stops a running prune and waits for it; later requests do nothing.
func (p *cachePruner) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}
