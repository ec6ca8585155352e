package docker

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestCacheState: after a build, the base image is among the images the
// engine reports, the job's own tag is not, and the build cache has a size.
func TestCacheState(t *testing.T) {
	base := baseImage(t)
	e := newEnv(t, nil)
	e.git.addRepo(t, "acme/cached", repoFiles{files: map[string]string{
		"Dockerfile": "FROM " + base + "\nRUN echo " + randomHex() + " > /f\n",
	}})
	runOK(t, e, request("job-cached", "acme/cached"))
	images, size, err := e.exec.CacheState(context.Background())
	if err != nil {
		t.Fatalf("CacheState() = %v", err)
	}
	if !slices.Contains(images, base) {
		t.Errorf("CacheState() images = %v, want %s among them", images, base)
	}
	for _, im := range images {
		if im == "<none>:<none>" || strings.HasPrefix(im, "blacktree.invalid/") || strings.Contains(im, ":blacktree-") {
			t.Errorf("CacheState() images include %q, not a base image", im)
		}
	}
	if size == 0 {
		t.Errorf("CacheState() size = 0 after a build with a RUN step")
	}
}

// TestEngineCachePrune runs the engine's prune with a bound far above what
// the shared test engine holds (a real prune to a small bound would empty
// the cache other tests on the engine rely on): the call is accepted and
// the base image stays.
func TestEngineCachePrune(t *testing.T) {
	base := baseImage(t)
	e := newEnv(t, nil)
	prune := engineCachePrune(e.exec.docker, 1<<50, hclog.NewNullLogger())
	if err := prune(context.Background()); err != nil {
		t.Fatalf("prune() = %v", err)
	}
	assertImagePresent(t, e, base)
}

// TestCachePrunerCoalesces: requests while a prune runs make one more
// prune, not one each; close waits for the running one.
func TestCachePrunerCoalesces(t *testing.T) {
	var mu sync.Mutex
	runs := 0
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	p := newCachePruner(func(ctx context.Context) error {
		mu.Lock()
		runs++
		mu.Unlock()
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, hclog.NewNullLogger())
	p.request()
	<-started
	for range 5 {
		p.request() // while the first runs
	}
	close(release)
	select {
	case <-started: // the one coalesced rerun
	case <-time.After(10 * time.Second):
		t.Fatal("no second prune after requests during the first")
	}
	p.close()
	mu.Lock()
	defer mu.Unlock()
	if runs != 2 {
		t.Errorf("prunes = %d, want 2 (the first, then one for all requests made during it)", runs)
	}
	p.request() // after close: nothing
	if runs != 2 {
		t.Errorf("a request after close ran a prune")
	}
}
