package bench

import (
	"context"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	DispatchFloorMain() // RunDispatchFloor re-executes this test binary
	goleak.VerifyTestMain(m)
}

func msd(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{name: "empty", sorted: nil, p: 99, want: 0},
		{name: "one sample any p", sorted: msd(7), p: 99.9, want: 7 * time.Millisecond},
		{name: "p50 of 1..100", sorted: hundred, p: 50, want: 50 * time.Millisecond},
		{name: "p99 of 1..100", sorted: hundred, p: 99, want: 99 * time.Millisecond},
		{name: "p99.9 of 1..100 is the max", sorted: hundred, p: 99.9, want: 100 * time.Millisecond},
		{name: "p100", sorted: hundred, p: 100, want: 100 * time.Millisecond},
		{name: "p0 clamps to min", sorted: hundred, p: 0, want: time.Millisecond},
		{name: "nearest rank rounds up", sorted: msd(1, 2, 3, 4), p: 51, want: 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeUnsorted(t *testing.T) {
	in := msd(5, 1, 4, 2, 3)
	l := Summarize(in)
	if l.N != 5 || l.P50 != 3*time.Millisecond || l.Max != 5*time.Millisecond || l.Mean != 3*time.Millisecond {
		t.Errorf("Summarize(%v) = %+v, want n=5 p50=3ms max=5ms mean=3ms", in, l)
	}
	if in[0] != 5*time.Millisecond {
		t.Errorf("Summarize sorted its input in place: %v", in)
	}
}

func TestRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(offsets ...int) []time.Time {
		out := make([]time.Time, len(offsets))
		for i, o := range offsets {
			out[i] = t0.Add(time.Duration(o) * time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name   string
		events []time.Time
		skip   float64
		want   float64
	}{
		{name: "none", events: nil, want: 0},
		{name: "one", events: at(0), want: 0},
		{name: "11 events over 1s", events: at(0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000), want: 10},
		{name: "unsorted input", events: at(1000, 0, 500), want: 2},
		// A slow start (the first event 10 s early) is dropped by skip.
		{name: "warm-up skipped", events: at(-10000, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900), skip: 0.1, want: 10},
		{name: "all at once", events: at(5, 5, 5), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Rate(tt.events, tt.skip); got < tt.want-1e-9 || got > tt.want+1e-9 {
				t.Errorf("Rate(%d events, %v) = %v, want %v", len(tt.events), tt.skip, got, tt.want)
			}
		})
	}
}

func TestLedgerAccount(t *testing.T) {
	l := NewLedger()
	t0 := time.Unix(2000, 0)
	for i, id := range []string{"a", "b", "c", "d"} {
		l.Published(id, t0.Add(time.Duration(i)*time.Millisecond))
	}
	l.Received("a", true, "", t0.Add(10*time.Millisecond))
	l.Received("b", true, "", t0.Add(21*time.Millisecond))
	l.Received("b", true, "", t0.Add(30*time.Millisecond)) // duplicate: first arrival counts
	l.Received("c", false, "boom", t0.Add(12*time.Millisecond))
	l.Received("zz", true, "", t0) // never published
	l.Undecodable()

	got := l.Account()
	want := Account{Published: 4, Answered: 3, Lost: 1, Duplicates: 1, Unexpected: 1, Failed: 1, Undecodable: 1}
	if got != want {
		t.Errorf("Account() = %+v, want %+v", got, want)
	}
	if got.Clean() {
		t.Errorf("Account().Clean() = true, want false")
	}
	lat := Summarize(l.Latencies())
	if lat.N != 3 || lat.Max != 20*time.Millisecond || lat.P50 != 10*time.Millisecond {
		t.Errorf("Summarize(Latencies()) = %+v, want n=3 p50=10ms max=20ms", lat)
	}
	if e, ok := l.ErrorOf("c"); !ok || e != "boom" {
		t.Errorf("ErrorOf(c) = %q, %v, want boom", e, ok)
	}
	if _, ok := l.ErrorOf("a"); ok {
		t.Errorf("ErrorOf(a) found an error for a successful job")
	}
	if at, ok := l.StatusAt("b"); !ok || !at.Equal(t0.Add(21*time.Millisecond)) {
		t.Errorf("StatusAt(b) = %v, %v, want first arrival", at, ok)
	}
	if n := len(l.StatusTimes()); n != 3 {
		t.Errorf("len(StatusTimes()) = %d, want 3", n)
	}
}

func TestLedgerLegs(t *testing.T) {
	l := NewLedger()
	t0 := time.Unix(2000, 0)
	l.Published("a", t0)
	l.Published("b", t0)
	l.Published("c", t0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	l.ReceivedWorked("a", true, "", ms(10), ms(3), ms(4))
	l.ReceivedWorked("a", true, "", ms(50), ms(30), ms(40)) // duplicate: the first status counts
	l.ReceivedWorked("b", true, "", ms(20), ms(5), ms(8))
	l.Received("c", true, "", ms(7)) // no startedAt/finishedAt (the relay's statuses)
	toWorker, back := l.Legs()
	if got := Summarize(toWorker); got.N != 2 || got.Max != 5*time.Millisecond || got.P50 != 3*time.Millisecond {
		t.Errorf("Legs() to the worker = %+v, want n=2 p50=3ms max=5ms", got)
	}
	if got := Summarize(back); got.N != 2 || got.Max != 12*time.Millisecond || got.P50 != 6*time.Millisecond {
		t.Errorf("Legs() back = %+v, want n=2 p50=6ms max=12ms", got)
	}
	if got := Summarize(l.Latencies()); got.N != 3 {
		t.Errorf("Latencies() n = %d, want 3", got.N)
	}
}

func TestLedgerClean(t *testing.T) {
	l := NewLedger()
	l.Published("x", time.Now())
	l.Received("x", true, "", time.Now())
	if a := l.Account(); !a.Clean() {
		t.Errorf("Account() = %v, want clean", a)
	}
}

func TestLedgerWaitAnswered(t *testing.T) {
	l := NewLedger()
	l.Published("a", time.Now())
	l.Published("b", time.Now())
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- l.WaitAnswered(ctx, 2)
	}()
	l.Received("a", true, "", time.Now())
	l.Received("b", true, "", time.Now())
	if err := <-done; err != nil {
		t.Errorf("WaitAnswered() = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.WaitAnswered(ctx, 3); err == nil {
		t.Errorf("WaitAnswered(cancelled, 3) = nil, want an error")
	}
}

func TestParseStatCPU(t *testing.T) {
	// A real /proc/<pid>/stat line with a command name containing spaces
	// and a ')'; utime=250 stime=50 ticks.
	line := "4242 (blacktree hub)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 123456 789 18446744073709551615"
	got, err := parseStatCPU(line)
	if err != nil || got != 3*time.Second {
		t.Errorf("parseStatCPU() = %v, %v, want 3s", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Errorf("parseStatCPU(garbage) = nil error, want an error")
	}
}

// TestSyscallsCountsWrites: Syscalls follows this process's write system
// calls, and syscallsPerJob divides by the jobs answered.
func TestSyscallsCountsWrites(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "sys")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n0, err := Syscalls(0)
	if err != nil {
		t.Fatalf("Syscalls(self) = %v", err)
	}
	for range 20 {
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	n1, err := Syscalls(0)
	if err != nil || n1-n0 < 20 {
		t.Errorf("Syscalls(self) after 20 writes = +%d, %v, want >= +20", n1-n0, err)
	}
	s := SideResult{DrainAccount: Account{Answered: 4}, DrainSyscalls: map[string]int64{"hub": 18, "broker": 10}}
	if got, want := syscallsPerJob(s), "hub 4.5, broker 2.5"; got != want {
		t.Errorf("syscallsPerJob() = %q, want %q", got, want)
	}
	if got := syscallsPerJob(SideResult{}); got != "—" {
		t.Errorf("syscallsPerJob(nothing drained) = %q, want —", got)
	}
}

// TestRoleFormats: the per-role rows print roles in roleOrder, skip
// absent ones, and scale as their headers say.
func TestRoleFormats(t *testing.T) {
	cpu := map[string]float64{"hub": 0.3, "btbench": 0.1, "workers": 0.2}
	if got, want := roles(cpu), "btbench 10%, hub 30%, workers 20%"; got != want {
		t.Errorf("roles() = %q, want %q", got, want)
	}
	n := float64(runtime.NumCPU())
	s := SideResult{Throughput: 1000, DrainMachineBusy: 1 / n, DrainCPU: cpu} // one core busy: 1000 µs per job
	if got, want := perJob(s), "btbench 100, hub 300, workers 200, rest 400, **total 1000**"; got != want {
		t.Errorf("perJob() = %q, want %q", got, want)
	}
	if got, want := rolesPerJob(map[string]float64{"broker": 5, "hub": 7, "total": 20}), "hub 7, broker 5, **total 20**"; got != want {
		t.Errorf("rolesPerJob() = %q, want %q", got, want)
	}
}

func TestWriteMarkdownPartialAndVerdicts(t *testing.T) {
	base := SideResult{Name: "baseline relay", Throughput: 1000,
		Latency: []LatencyRun{{Rate: 500, Latency: Latency{N: 10, P99: 3 * time.Millisecond}}}}
	bt := SideResult{Name: "blacktree", Throughput: 900,
		Latency: []LatencyRun{{Rate: 500, Latency: Latency{N: 10, P99: 4 * time.Millisecond}}}}
	tests := []struct {
		name string
		rep  Report
		want []string
		lack []string
	}{
		{name: "empty", rep: Report{Command: "btbench"}, want: []string{"# Benchmarks", "`btbench`"}},
		{name: "baseline only", rep: Report{Dispatch: &DispatchResult{Sides: []SideResult{base}, Rates: []float64{500}, RateLabels: []string{"half"}}},
			want: []string{"| throughput (jobs/s) | 1000 |"}},
		{name: "targets met", rep: Report{Dispatch: &DispatchResult{Sides: []SideResult{base, bt}, Rates: []float64{500}, RateLabels: []string{"half"}}},
			want: []string{"Blacktree 0.90× — **met**", "+1.00 ms — **met**"},
			lack: []string{"CPU budget"}}, // no CPU measured
		{name: "cpu budget", rep: Report{Dispatch: &DispatchResult{Sides: []SideResult{cpuSide(1000, 1, 0.1), cpuSide(500, 1, 0.3)}}},
			// Baseline: 1000 µs per job, so 0.8× allows 1250; Blacktree's side
			// spends 2000 per job, 1200 of them in the hub and workers.
			want: []string{"may spend at most 450 µs", "they spent **1200 µs**"}},
		{name: "cpu budget exceeded outside the hub", rep: Report{Dispatch: &DispatchResult{Sides: []SideResult{cpuSide(1000, 1, 0.1), cpuSide(400, 1, 0.05)}}},
			want: []string{"nothing is left for the hub and workers", "exceed the allowance by 1000 µs", "they spent **250 µs**"}},
		{name: "median of rounds", rep: Report{Dispatch: &DispatchResult{Sides: []SideResult{base, bt},
			Rounds: []Round{{Baseline: 1000, Blacktree: 500}, {Baseline: 2000, Blacktree: 1600}}}},
			want: []string{"drain 3 times each", "Blacktree 0.80×, the median of 3 alternating rounds (900 / 1000 jobs/s = 0.90×; 500 / 1000 jobs/s = 0.50×; 1600 / 2000 jobs/s = 0.80×) — **met**"}},
		{name: "binpack side and rounds", rep: Report{Dispatch: &DispatchResult{
			Sides:  []SideResult{base, bt, {Name: sideOneWorker, Throughput: 700}, {Name: sideBinpack, Throughput: 950}},
			Rounds: []Round{{Baseline: 1000, Blacktree: 500, Binpack: 610}, {Baseline: 2000, Blacktree: 1600}}}},
			want: []string{"| baseline relay | blacktree | blacktree, one worker process | blacktree, binpack placement |",
				"(one worker process: 0.70×)", "(binpack placement: 0.78×, the median of 0.95× and 0.61×)",
				"as deployed (and with binpack placement) drain 3 times each"}},
		{name: "hub publish leg", rep: Report{Dispatch: &DispatchResult{Sides: []SideResult{base, {Name: "blacktree", Throughput: 900,
			Latency: []LatencyRun{{Rate: 500, Latency: Latency{N: 10}, HubPublish: Latency{N: 10, P50: 1500 * time.Microsecond, P99: 7 * time.Millisecond}}}}},
			Rates: []float64{500}, RateLabels: []string{"half"}}},
			want: []string{"| hub: JobResult → status confirmed by the broker (its histogram), p50 / p99 | — | 1.50ms / 7.00ms |"}},
		{name: "errors listed", rep: Report{Errors: []string{"fleet: boom"}}, want: []string{"did not complete", "- fleet: boom"}},
		{name: "kill verdict", rep: Report{Failure: &FailureResult{Kills: []KillResult{{Grace: 2 * time.Second, Flagged: true, Detected: 3500 * time.Millisecond}}}},
			want: []string{"| 2s | 3.5s | 3s |", "**missed**"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			tt.rep.WriteMarkdown(&b)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("WriteMarkdown() lacks %q; got:\n%s", w, b.String())
				}
			}
			for _, w := range tt.lack {
				if strings.Contains(b.String(), w) {
					t.Errorf("WriteMarkdown() has %q, want it left out; got:\n%s", w, b.String())
				}
			}
		})
	}
}

// cpuSide is a drained side with the machine busy for cores and the hub
// and workers each using share of a core.
func cpuSide(jobsPerSec, cores, share float64) SideResult {
	return SideResult{Throughput: jobsPerSec, DrainMachineBusy: cores / float64(runtime.NumCPU()),
		DrainCPU: map[string]float64{"hub": share, "workers": share}}
}

func TestThroughputRatioMedian(t *testing.T) {
	sides := []SideResult{{Throughput: 1000}, {Throughput: 400}}
	tests := []struct {
		name   string
		rounds []Round
		want   float64
	}{
		{name: "one round", want: 0.4},
		{name: "odd", rounds: []Round{{Baseline: 100, Blacktree: 90}, {Baseline: 100, Blacktree: 50}}, want: 0.5},
		{name: "even", rounds: []Round{{Baseline: 100, Blacktree: 60}}, want: 0.5},
		{name: "failed round skipped", rounds: []Round{{}, {Baseline: 100, Blacktree: 60}}, want: 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &DispatchResult{Sides: sides, Rounds: tt.rounds}
			if got := d.ThroughputRatio(); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("ThroughputRatio() = %v, want %v", got, tt.want)
			}
		})
	}
	bp := &DispatchResult{Sides: append(sides, SideResult{Name: sideBinpack, Throughput: 700}),
		Rounds: []Round{{Baseline: 100, Blacktree: 40, Binpack: 50}, {Baseline: 100, Blacktree: 40}}}
	if got := bp.BinpackRatio(); math.Abs(got-0.6) > 1e-9 {
		t.Errorf("BinpackRatio() = %v, want 0.6 (median of 0.7 and 0.5; the round without binpack left out)", got)
	}
	if got := (&DispatchResult{Sides: sides}).BinpackRatio(); got != 0 {
		t.Errorf("BinpackRatio() without a binpack side = %v, want 0", got)
	}
	if got := (&DispatchResult{Sides: sides[:1]}).ThroughputRatio(); got != 0 {
		t.Errorf("ThroughputRatio() of the baseline alone = %v, want 0", got)
	}
}

func TestPreserveFindings(t *testing.T) {
	old := "# Benchmarks\nold numbers\n" + FindingsMarker + "\n## Findings\nkeep me\n"
	if got, want := PreserveFindings(old), FindingsMarker+"\n## Findings\nkeep me\n"; got != want {
		t.Errorf("PreserveFindings() = %q, want %q", got, want)
	}
	if got := PreserveFindings("no marker"); !strings.HasPrefix(got, FindingsMarker) {
		t.Errorf("PreserveFindings(no marker) = %q, want a fresh marker", got)
	}
}

// The floor server is given the interval the hub, with the same
// environment, gives the fleet, and the same grid.
func TestHubHeartbeats(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      []string
		n        int
		want     time.Duration
		wantGrid time.Duration
		wantErr  bool
	}{
		{name: "defaults, small fleet", n: 100, want: 5 * time.Second, wantGrid: 100 * time.Millisecond},
		{name: "defaults, 10k", n: 10000, want: 10 * time.Second, wantGrid: 100 * time.Millisecond},
		{name: "defaults, 50k: the cap", n: 50000, want: 20 * time.Second, wantGrid: 100 * time.Millisecond},
		{name: "rate off", env: []string{"BLACKTREE_MAX_HEARTBEAT_RATE=0"}, n: 10000, want: 5 * time.Second, wantGrid: 100 * time.Millisecond},
		{name: "own interval and rate", env: []string{"GOGC=50", "BLACKTREE_HEARTBEAT_INTERVAL=1s", "BLACKTREE_MAX_HEARTBEAT_RATE=100"}, n: 150, want: 2 * time.Second, wantGrid: 100 * time.Millisecond},
		{name: "own cap", env: []string{"BLACKTREE_MAX_HEARTBEAT_INTERVAL=5s"}, n: 10000, want: 5 * time.Second, wantGrid: 100 * time.Millisecond},
		{name: "own grid", env: []string{"BLACKTREE_HEARTBEAT_GRID=20ms"}, n: 10, want: 5 * time.Second, wantGrid: 20 * time.Millisecond},
		{name: "grid off", env: []string{"BLACKTREE_HEARTBEAT_GRID=0"}, n: 10, want: 5 * time.Second},
		{name: "bad value", env: []string{"BLACKTREE_HEARTBEAT_INTERVAL=soon"}, wantErr: true},
		{name: "bad grid", env: []string{"BLACKTREE_HEARTBEAT_GRID=often"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, grid, err := hubHeartbeats(tc.env, tc.n)
			if (err != nil) != tc.wantErr || got != tc.want || grid != tc.wantGrid {
				t.Errorf("hubHeartbeats(%q, %d) = %s, %s, %v; want %s, %s, error %v", tc.env, tc.n, got, grid, err, tc.want, tc.wantGrid, tc.wantErr)
			}
		})
	}
}

func TestHelpFlags(t *testing.T) {
	const help = `Usage: blacktree-hub [flags]

A fleet past the rate gets a longer interval; --max-heartbeat-rate 0 keeps
--heartbeat-interval whatever the fleet's size.

Flags:
  --heartbeat-interval duration
    	how often workers send heartbeats (default "5s")
  --grpc-addr addr
    	where workers connect (default ":7070")
  --max-heartbeat-rate float
    	most heartbeats per second
    	the whole fleet sends (default "1000")
`
	tests := []struct {
		name  string
		words []string
		want  []string
	}{
		{name: "flag lines only, descriptions joined", words: []string{"heartbeat"}, want: []string{
			`--heartbeat-interval duration  how often workers send heartbeats (default "5s")`,
			`--max-heartbeat-rate float  most heartbeats per second  the whole fleet sends (default "1000")`,
		}},
		{name: "a word in a description", words: []string{"connect"}, want: []string{`--grpc-addr addr  where workers connect (default ":7070")`}},
		{name: "no match", words: []string{"tls"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := helpFlags(help, tt.words...)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("helpFlags(%q) = %q, want %q", tt.words, got, tt.want)
			}
		})
	}
}
