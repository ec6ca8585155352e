package builds

import (
	"slices"
	"time"

	"github.com/blacktree/blacktree/bench"
)

// quantile is the nearest-rank p-th percentile of samples (any order);
// 0 for none.
func quantile(samples []time.Duration, p float64) time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	return bench.Percentile(s, p)
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// CacheHits counts a set of builds' cache use from their JobResponses'
// cachedSteps and totalSteps. A build counts as a hit when at least one
// of its steps came from the cache: in the benchmark's Dockerfile the only
// step a rebuild can reuse is the dependency layer (the changed COPY runs,
// FROM is not a step).
type CacheHits struct {
	// Counted is how many builds reported steps (totalSteps > 0); an
	// executor that counts no steps reports none.
	Counted int
	// Hits is how many of those reused at least one step.
	Hits int
	// CachedSteps and TotalSteps are the sums over the counted builds.
	CachedSteps, TotalSteps int
}

// Known reports whether any build reported its steps.
func (c CacheHits) Known() bool { return c.Counted > 0 }

// Rate is Hits/Counted (0 when unknown).
func (c CacheHits) Rate() float64 {
	if c.Counted == 0 {
		return 0
	}
	return float64(c.Hits) / float64(c.Counted)
}

// StepShare is CachedSteps/TotalSteps (0 when unknown).
func (c CacheHits) StepShare() float64 {
	if c.TotalSteps == 0 {
		return 0
	}
	return float64(c.CachedSteps) / float64(c.TotalSteps)
}

// countHits sums the step counts of builds.
func countHits(builds []Build) CacheHits {
	var c CacheHits
	for _, b := range builds {
		if b.TotalSteps == 0 {
			continue
		}
		c.Counted++
		c.CachedSteps += int(b.CachedSteps)
		c.TotalSteps += int(b.TotalSteps)
		if b.CachedSteps > 0 {
			c.Hits++
		}
	}
	return c
}
