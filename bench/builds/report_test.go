package builds

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleResult has two rounds of the rebuild scenario and both fleet
// modes: affinity warm in 9 rebuilds of 10 at 1 s, spread cold at 4 s.
func sampleResult() *Result {
	r := &Result{
		Command: "btbench-builds --rounds 2",
		Started: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Setup: Setup{
			Dockerfile:   "FROM a\nRUN b\n",
			WorkerArgs:   []string{"--cache-max-size=1GB"},
			FleetWorkers: 3,
			FleetRepos:   1,
			FleetRounds:  10,
		},
	}
	for round := 1; round <= 2; round++ {
		r.Rebuild = append(r.Rebuild,
			Build{Round: round, Side: SideHand, Kind: KindCold, Seconds: 3},
			Build{Round: round, Side: SideHand, Kind: KindWarm, Seconds: 1},
			Build{Round: round, Side: SideBlacktree, Kind: KindCold, Seconds: 3.4},
			Build{Round: round, Side: SideBlacktree, Kind: KindWarm, Seconds: 1.7, CachedSteps: 1, TotalSteps: 2},
		)
	}
	aff := FleetMode{Mode: "affinity", HubFlags: []string{"--cache-affinity=true"}}
	spr := FleetMode{Mode: "spread", HubFlags: []string{"--cache-affinity=false"}}
	aff.Builds = append(aff.Builds, Build{Round: 0, Side: SideBlacktree, Kind: KindFirst, Repo: "r", Seconds: 30, TotalSteps: 2})
	for round := 1; round <= 10; round++ {
		cached := uint32(1)
		if round == 10 {
			cached = 0
		}
		aff.Builds = append(aff.Builds, Build{Round: round, Side: SideBlacktree, Kind: KindRebuild, Repo: "r", Worker: "w1", Seconds: 1, CachedSteps: cached, TotalSteps: 2})
		spr.Builds = append(spr.Builds, Build{Round: round, Side: SideBlacktree, Kind: KindRebuild, Repo: "r", Worker: []string{"w1", "w2"}[round%2], Seconds: 4, TotalSteps: 2})
	}
	r.Fleet = []FleetMode{aff, spr}
	return r
}

func TestTargetsCompareMediansWithTheirLimits(t *testing.T) {
	got := sampleResult().Targets()
	want := []Target{
		{Name: "warm rebuild ≤ 1.3 × hand-run warm + 0.5 s", Measured: "1.70 s", Limit: "1.80 s", Met: "yes"},
		{Name: "cold build ≤ 1.1 × hand-run cold", Measured: "3.40 s", Limit: "3.30 s", Met: "no"},
		{Name: "fleet cache hit rate with affinity ≥ 90%", Measured: "90%", Limit: "90%", Met: "yes"},
		{Name: "fleet median: spread ÷ affinity ≥ 3", Measured: "4.00 (4.00 s ÷ 1.00 s)", Limit: "3.00", Met: "yes"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Targets() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestTargetsAreNotApplicableWithoutMeasurements(t *testing.T) {
	r := &Result{}
	for _, tg := range r.Targets() {
		if tg.Met != "n/a" {
			t.Errorf("target %q of an empty run: met %q, want n/a", tg.Name, tg.Met)
		}
	}
	r = sampleResult()
	for i := range r.Fleet[0].Builds {
		r.Fleet[0].Builds[i].CachedSteps, r.Fleet[0].Builds[i].TotalSteps = 0, 0
	}
	if hit := r.Targets()[2]; hit.Met != "n/a" || !strings.Contains(hit.Measured, "n/a") {
		t.Errorf("hit-rate target without step counts = %+v, want n/a", hit)
	}
}

func TestFleetSummaryLeavesOutFirstBuilds(t *testing.T) {
	s := sampleResult().Fleet[0].Summary()
	if s.N != 10 || s.Median != time.Second || s.Hits.Counted != 10 || s.WorkersPerRepo != 1 {
		t.Errorf("affinity Summary() = %+v, want 10 rebuilds, median 1s, 10 counted, 1 worker per repository", s)
	}
	if w := sampleResult().Fleet[1].Summary().WorkersPerRepo; w != 2 {
		t.Errorf("spread WorkersPerRepo = %v, want 2", w)
	}
}

func TestMarkdownHasTheTablesAndEscapesErrors(t *testing.T) {
	r := sampleResult()
	r.Errors = []string{"fleet: a | b\nsecond line"}
	var buf bytes.Buffer
	r.WriteMarkdown(&buf)
	md := buf.String()
	for _, want := range []string{
		"| cold build ≤ 1.1 × hand-run cold | 3.40 s | 3.30 s | no |",
		"| cold | 3.40 s | 3.00 s | 1.13 |",
		"| warm | 1.70 s | 1.00 s | 1.70 |",
		"| 1 | hand-run first | 3.40 s | 1.70 s | 3.00 s | 1.00 s | 1/2 |",
		"| affinity | `--cache-affinity=true` | 10 | 1.00 s | 1.00 s | 90% (9 of 10) | 9/20 | 1.0 |",
		"| spread ÷ affinity | | | 4.00 | 4.00 | | | |",
		"| Dockerfile | `FROM a` / `RUN b` |",
		"| workers' extra arguments | `--cache-max-size=1GB` |",
		`| fleet: a \| b second line |`,
		"make bench-builds",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestJSONRoundTrips(t *testing.T) {
	r := sampleResult()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatalf("WriteJSON() = %v", err)
	}
	back, err := ReadJSON(&buf)
	if err != nil {
		t.Fatalf("ReadJSON() = %v", err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("JSON round trip changed the result:\n%+v\nwant\n%+v", back, r)
	}
}

func TestMarkdownSaysWhichScenariosDidNotRun(t *testing.T) {
	var buf bytes.Buffer
	(&Result{}).WriteMarkdown(&buf)
	if n := strings.Count(buf.String(), "| not run |"); n != 2 {
		t.Errorf("Markdown of a run without scenarios has %d 'not run' tables, want 2:\n%s", n, buf.String())
	}
}
