package logwriter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is an io.Writer that keeps every write apart and signals each.
type recorder struct {
	mu     sync.Mutex
	writes []string
	fail   error // returned by every write when set
	wrote  chan struct{}
}

func newRecorder() *recorder { return &recorder{wrote: make(chan struct{}, 1024)} }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	select {
	case r.wrote <- struct{}{}:
	default:
	}
	if r.fail != nil {
		return 0, r.fail
	}
	return len(p), nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

// waitWrites waits until r has n writes, failing the test after 5 s.
func (r *recorder) waitWrites(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if got := r.got(); len(got) >= n {
			return got
		}
		select {
		case <-r.wrote:
		case <-deadline:
			t.Fatalf("writes = %q, want %d of them within 5s", r.got(), n)
		}
	}
}

func TestLevelWrite(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		lines    []hclog.Level
		want     []string // writes seen right after the lines, before any timer
	}{
		{"info is held", time.Hour, []hclog.Level{hclog.Info, hclog.Debug, hclog.Trace}, nil},
		{"warn writes what is held with it", time.Hour, []hclog.Level{hclog.Info, hclog.Debug, hclog.Warn}, []string{"0 1 2 "}},
		{"error writes at once", time.Hour, []hclog.Level{hclog.Error}, []string{"0 "}},
		{"no level writes at once", time.Hour, []hclog.Level{hclog.Info, hclog.NoLevel, hclog.Info}, []string{"0 1 "}},
		{"interval 0 writes every line", 0, []hclog.Level{hclog.Info, hclog.Debug}, []string{"0 ", "1 "}},
		{"negative interval writes every line", -1, []hclog.Level{hclog.Trace, hclog.Warn}, []string{"0 ", "1 "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecorder()
			w := New(r, tt.interval)
			for i, l := range tt.lines {
				line := fmt.Sprintf("%d ", i)
				if n, err := w.LevelWrite(l, []byte(line)); n != len(line) || err != nil {
					t.Fatalf("LevelWrite(%v) = %d, %v, want %d, nil", l, n, err, len(line))
				}
			}
			if got := r.got(); strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("writes = %q, want %q", got, tt.want)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("Close() = %v, want nil", err)
			}
			all := strings.Join(r.got(), "")
			var want strings.Builder
			for i := range tt.lines {
				fmt.Fprintf(&want, "%d ", i)
			}
			if all != want.String() {
				t.Errorf("everything written after Close = %q, want %q", all, want.String())
			}
		})
	}
}

func TestHeldLinesWrittenAfterInterval(t *testing.T) {
	r := newRecorder()
	w := New(r, 10*time.Millisecond)
	defer w.Close()
	for i := range 3 {
		fmt.Fprint(levelWriter{w, hclog.Info}, i)
	}
	got := r.waitWrites(t, 1)
	if len(got) != 1 || got[0] != "012" {
		t.Fatalf("writes after the interval = %q, want one write %q", got, "012")
	}
	// The timer is armed again by the next line.
	fmt.Fprint(levelWriter{w, hclog.Debug}, "x")
	if got := r.waitWrites(t, 2); got[1] != "x" {
		t.Fatalf("second write = %q, want %q", got[1], "x")
	}
}

// levelWriter adapts a Writer to io.Writer at one level.
type levelWriter struct {
	w *Writer
	l hclog.Level
}

func (lw levelWriter) Write(p []byte) (int, error) { return lw.w.LevelWrite(lw.l, p) }

func TestManyHeldBytesWrittenWithoutWaiting(t *testing.T) {
	r := newRecorder()
	w := New(r, time.Hour)
	line := bytes.Repeat([]byte("a"), 1000)
	n := maxHeld/len(line) + 1
	for range n {
		if _, err := w.LevelWrite(hclog.Info, line); err != nil {
			t.Fatal(err)
		}
	}
	got := r.got()
	if len(got) != 1 || len(got[0]) != n*len(line) {
		t.Fatalf("writes after %d bytes held = %d (first %d bytes), want 1 of %d bytes", n*len(line), len(got), len(strings.Join(got, "")), n*len(line))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWritesHeldAndThenEveryLine(t *testing.T) {
	r := newRecorder()
	w := New(r, time.Hour)
	_, _ = w.LevelWrite(hclog.Info, []byte("held\n"))
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close() = %v, want nil", err)
	}
	_, _ = w.LevelWrite(hclog.Info, []byte("late\n"))
	if got := r.got(); len(got) != 2 || got[0] != "held\n" || got[1] != "late\n" {
		t.Fatalf("writes = %q, want [held late] as two writes", got)
	}
}

func TestWriteErrorReported(t *testing.T) {
	r := newRecorder()
	r.fail = errors.New("disk full")
	w := New(r, time.Hour)
	if _, err := w.LevelWrite(hclog.Info, []byte("a\n")); err != nil {
		t.Fatalf("held LevelWrite() = %v, want nil (nothing written yet)", err)
	}
	if _, err := w.LevelWrite(hclog.Error, []byte("b\n")); !errors.Is(err, r.fail) {
		t.Fatalf("LevelWrite(Error) = %v, want %v", err, r.fail)
	}
	if err := w.Close(); !errors.Is(err, r.fail) {
		t.Fatalf("Close() = %v, want %v", err, r.fail)
	}
}

// TestThroughHclog checks the Writer as hclog uses it: lines keep their
// order, info lines wait for the error line, and each line is whole.
func TestThroughHclog(t *testing.T) {
	r := newRecorder()
	w := New(r, time.Hour)
	log := hclog.New(&hclog.LoggerOptions{Name: "test", Output: w, Level: hclog.Trace})
	log.Info("first", "n", 1)
	log.Named("sub").Debug("second")
	if got := r.got(); len(got) != 0 {
		t.Fatalf("writes before the error = %q, want none", got)
	}
	log.Error("third", "error", errors.New("boom"))
	got := r.got()
	if len(got) != 1 {
		t.Fatalf("writes = %q, want 1", got)
	}
	lines := strings.Split(strings.TrimSuffix(got[0], "\n"), "\n")
	want := []string{"[INFO]  test: first: n=1", "[DEBUG] test.sub: second", "[ERROR] test: third: error=boom"}
	if len(lines) != len(want) {
		t.Fatalf("lines = %q, want %d", lines, len(want))
	}
	for i, l := range lines {
		if !strings.HasSuffix(l, want[i]) {
			t.Errorf("line %d = %q, want it to end in %q", i, l, want[i])
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrent has many goroutines log at mixed levels while the timer
// writes; every line comes out whole, once, and each goroutine's lines in
// the order it wrote them.
func TestConcurrent(t *testing.T) {
	r := newRecorder()
	w := New(r, 100*time.Microsecond)
	const goroutines, lines = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range lines {
				level := hclog.Info
				if i%97 == 0 {
					level = hclog.Warn
				}
				_, _ = w.LevelWrite(level, fmt.Appendf(nil, "g%d-%d\n", g, i))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, goroutines)
	for _, l := range strings.Split(strings.TrimSuffix(strings.Join(r.got(), ""), "\n"), "\n") {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d-%d", &g, &i); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d, want %d", g, i, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != lines {
			t.Errorf("goroutine %d: %d lines written, want %d", g, n, lines)
		}
	}
}

// BenchmarkInfoLine logs info lines through hclog into a file, as the
// benchmark's processes do, and into a pipe drained by a reader goroutine,
// as under systemd or a container runtime, where every write also wakes
// the reader. cpu-ns/line is the whole process's CPU (the reader's
// included) per line.
func BenchmarkInfoLine(b *testing.B) {
	for _, dest := range []string{"file", "pipe"} {
		for _, interval := range []time.Duration{0, DefaultInterval} {
			b.Run(fmt.Sprintf("%s/interval=%v", dest, interval), func(b *testing.B) {
				out := benchOutput(b, dest)
				w := New(out, interval)
				log := hclog.New(&hclog.LoggerOptions{Name: "bench", Output: w})
				cpu0 := processCPU(b)
				for b.Loop() {
					log.Info("job finished", "job_id", "job-1234", "success", true)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/line")
			})
		}
	}
}

// benchOutput returns a file in a temporary directory, or the write end of
// a pipe whose reader discards what it reads; both are closed (the reader
// waited for) at the end of the benchmark.
func benchOutput(b *testing.B, dest string) io.Writer {
	b.Helper()
	if dest == "file" {
		f, err := os.Create(filepath.Join(b.TempDir(), "log"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		return f
	}
	r, wr, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, r)
	}()
	b.Cleanup(func() {
		wr.Close()
		<-done
		r.Close()
	})
	return wr
}

// processCPU returns the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
