package builds

import (
	"testing"
	"time"
)

func TestQuantileIsNearestRankOfUnsortedSamples(t *testing.T) {
	s := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	if got := quantile(s, 50); got != 5 {
		t.Errorf("quantile(50) = %d, want 5", got)
	}
	if got := quantile(s, 90); got != 9 {
		t.Errorf("quantile(90) = %d, want 9", got)
	}
	if s[0] != 5 {
		t.Errorf("quantile sorted its argument in place: %v", s)
	}
	if got := quantile(nil, 50); got != 0 {
		t.Errorf("quantile(nil) = %d, want 0", got)
	}
}

func TestCountHitsCountsBuildsWithACachedStep(t *testing.T) {
	c := countHits([]Build{
		{CachedSteps: 1, TotalSteps: 2},
		{CachedSteps: 1, TotalSteps: 2},
		{CachedSteps: 0, TotalSteps: 2},
		{CachedSteps: 0, TotalSteps: 0}, // counts no steps: left out
	})
	if c.Counted != 3 || c.Hits != 2 || c.CachedSteps != 2 || c.TotalSteps != 6 {
		t.Errorf("countHits() = %+v, want 3 counted, 2 hits, 2/6 steps", c)
	}
	if got := c.Rate(); got < 0.66 || got > 0.67 {
		t.Errorf("Rate() = %v, want 2/3", got)
	}
	if got := c.StepShare(); got < 0.33 || got > 0.34 {
		t.Errorf("StepShare() = %v, want 1/3", got)
	}
	if none := countHits([]Build{{}}); none.Known() {
		t.Errorf("countHits of builds without steps is Known, want unknown")
	}
}

func TestDockerfileChangesOnlyWithItsNonce(t *testing.T) {
	a := dockerfile("local/x:1", "aa", 2*time.Second)
	want := "FROM local/x:1\nRUN sleep 2 && echo deps-aa > /deps\nCOPY app.txt /app.txt\n"
	if a != want {
		t.Errorf("dockerfile() = %q, want %q", a, want)
	}
	if b := dockerfile("local/x:1", "bb", 2*time.Second); b == a {
		t.Errorf("dockerfiles of two nonces are the same: %q", b)
	}
}

func TestHasFlagMatchesWholeFlagNames(t *testing.T) {
	help := "Flags:\n  --cache-affinity\n    \tprefer warm workers\n  --affinity-wait duration\n    \twait\n  --builder-x string\n"
	for name, want := range map[string]bool{
		"cache-affinity": true,
		"affinity-wait":  true,
		"builder":        false, // only --builder-x is there
		"cache":          false,
	} {
		if got := hasFlag(help, name); got != want {
			t.Errorf("hasFlag(%q) = %v, want %v", name, got, want)
		}
	}
}
