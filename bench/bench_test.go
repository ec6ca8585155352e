package bench

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
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
// calls.
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
}

// TestPerJob: the per-role figures print in roleOrder and skip absent
// roles; cpuPerJob charges each role its processes' CPU over the jobs.
func TestPerJob(t *testing.T) {
	m := map[string]float64{"total": 20, "hub": 7, "broker": 5}
	if got, want := perJob(m), "broker 5, hub 7, total 20"; got != want {
		t.Errorf("perJob() = %q, want %q", got, want)
	}
	use := CPUUse{
		Wall:        time.Second,
		MachineBusy: 1 / float64(runtime.NumCPU()), // one core busy
		Procs:       map[int]float64{10: 0.25, 11: 0.125, 12: 0.125},
	}
	got := cpuPerJob(use, map[string][]int{"hub": {10}, "workers": {11, 12}}, 1000)
	want := map[string]float64{"total": 1000, "hub": 250, "workers": 250}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-6 {
			t.Errorf("cpuPerJob()[%q] = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if got := cpuPerJob(use, nil, 0); got != nil {
		t.Errorf("cpuPerJob(no jobs) = %v, want nil", got)
	}
}

func TestDispatchRatioMedian(t *testing.T) {
	round := func(base, bt float64) Round {
		return Round{Baseline: Drain{JobsPerSec: base}, Blacktree: Drain{JobsPerSec: bt}}
	}
	tests := []struct {
		name   string
		rounds []Round
		want   float64
	}{
		{name: "none", want: 0},
		{name: "one round", rounds: []Round{round(1000, 400)}, want: 0.4},
		{name: "odd", rounds: []Round{round(1000, 400), round(100, 90), round(100, 50)}, want: 0.5},
		{name: "even", rounds: []Round{round(1000, 400), round(100, 60)}, want: 0.5},
		{name: "failed baseline skipped", rounds: []Round{round(0, 300), round(1000, 400), round(100, 60)}, want: 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &DispatchResult{Rounds: tt.rounds}
			if got := d.Ratio(); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Ratio() = %v, want %v", got, tt.want)
			}
		})
	}
	d := &DispatchResult{Rounds: []Round{round(1, 300), round(1, 100), round(1, 200)}}
	if got := d.BlacktreeRate(); got != 200 {
		t.Errorf("BlacktreeRate() = %v, want the median 200", got)
	}
	if got := d.JournalRatio(); got != 0 {
		t.Errorf("JournalRatio() without NoJournal drains = %v, want 0", got)
	}
	for i, without := range []float64{400, 0, 250} { // round 2 not measured
		d.Rounds[i].NoJournal.JobsPerSec = without
	}
	if got := d.JournalRatio(); math.Abs(got-0.775) > 1e-9 {
		t.Errorf("JournalRatio() = %v, want the median of 0.75 and 0.8", got)
	}
}

// TestWriteMarkdown: each scenario's section appears only when measured,
// carries its figures, and the file has no splice marker or verdicts.
func TestWriteMarkdown(t *testing.T) {
	drain := func(rate float64) Drain {
		return Drain{JobsPerSec: rate, CPUPerJob: map[string]float64{"hub": 100, "total": 300}, Account: Account{Published: 10, Answered: 10}}
	}
	lat := &LatencyRun{Rate: 450, Latency: Latency{N: 10, P99: 4 * time.Millisecond}, Account: Account{Published: 10, Answered: 10}}
	slower := &LatencyRun{Rate: 450, Latency: Latency{N: 10, P50: time.Millisecond, P99: 6500 * time.Microsecond}}
	tests := []struct {
		name string
		rep  Report
		want []string
		lack []string
	}{
		{name: "empty", rep: Report{Command: "btbench"},
			want: []string{"# Benchmarks", "- command: `btbench`", "## How to run", "BENCHMARKS-builds.md"},
			lack: []string{"## Dispatch", "## Fleet", "## Failure", "## Log", "<!--", "met**", "missed**"}},
		{name: "dispatch", rep: Report{Dispatch: &DispatchResult{
			Config:           DefaultDispatchConfig(),
			Rounds:           []Round{{Baseline: drain(1000), Blacktree: drain(500), NoJournal: drain(625)}, {Baseline: drain(1000), Blacktree: drain(700)}},
			BaselineLatency:  lat,
			BlacktreeLatency: slower,
		}}, want: []string{"| Blacktree less the relay, p50 / p99 | | +1.00ms / +2.50ms |", "| 1 | 1000 | 500 | 0.50× | 10/10 clean; 10/10 clean |", "| **median** | | | **0.60×** | |",
			"| 2 | hub 100, total 300 | hub 100, total 300 |", "both offered 450 jobs/s", "| p99 | 4.00ms | 6.50ms |",
			"| 1 | 500 | 625 | 0.80× | 0 / 0 | 10/10 clean |", "| **median** | | | **0.80×** | | |"}},
		{name: "errors listed", rep: Report{Errors: []string{"fleet: boom"}}, want: []string{"did not complete", "- fleet: boom"}},
		{name: "failure", rep: Report{Failure: &FailureResult{
			Kills:     []KillResult{{Grace: 2 * time.Second, Flagged: true, Detected: 2010 * time.Millisecond, Error: "worker lost"}},
			Partition: PartitionResult{Dead: 15 * time.Second, HeartbeatBound: 15 * time.Second, KeepaliveBound: 40 * time.Second},
		}}, want: []string{"| 2s | 2.01s | +10ms | worker lost |", "| 15s | 15s | 40s |"}},
		{name: "fleet", rep: Report{Fleet: &FleetResult{
			Config:          FleetRunConfig{N: 100, SmallN: 10},
			RSSBefore:       1 << 20,
			RSSAfter:        1<<20 + 100*4096,
			JobsPerSec:      900,
			SmallJobsPerSec: 1000,
		}}, want: []string{"## Fleet: 100 workers on one hub", "| 4.0 KiB |", "| ratio, 100 workers to 10 | **0.90×** |"}},
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
					t.Errorf("WriteMarkdown() has %q; got:\n%s", w, b.String())
				}
			}
		})
	}
}

// TestWriteJSON: the JSON carries the figures and leaves out scenarios
// that did not run.
func TestWriteJSON(t *testing.T) {
	rep := Report{Command: "btbench", Dispatch: &DispatchResult{Rounds: []Round{{Baseline: Drain{JobsPerSec: 1000}}}}}
	var b strings.Builder
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatalf("WriteJSON() = %v", err)
	}
	var back Report
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
		t.Fatalf("the JSON does not read back: %v\n%s", err, b.String())
	}
	if back.Dispatch == nil || back.Dispatch.Rounds[0].Baseline.JobsPerSec != 1000 {
		t.Errorf("read back Dispatch = %+v, want the round's 1000 jobs/s", back.Dispatch)
	}
	if strings.Contains(b.String(), `"Fleet"`) {
		t.Errorf("WriteJSON() has a Fleet without a fleet run:\n%s", b.String())
	}
}

// TestShown: the report's command lines carry no scratch directory and no
// broker password.
func TestShown(t *testing.T) {
	e := &Env{AMQPURL: "amqp://guest:secret@127.0.0.1:5672/", Dir: "/tmp/btbench-123"}
	got := strings.Join(e.Shown([]string{"--amqp-url", e.AMQPURL, "--state-dir", "/tmp/btbench-123/state-w0"}), " ")
	if want := "--amqp-url amqp://guest:***@127.0.0.1:5672/ --state-dir $DIR/state-w0"; got != want {
		t.Errorf("Shown() = %q, want %q", got, want)
	}
}
