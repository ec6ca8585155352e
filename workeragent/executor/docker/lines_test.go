package docker

import (
	"bytes"
	"context"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// memoryLimit is the most heap and RSS a worker may use while a job
// prints one endless line.
const memoryLimit = 200 << 20

// countingSink counts what reaches the agent's writer and keeps its last
// bytes.
type countingSink struct {
	mu   sync.Mutex
	n    int
	last []byte
}

func (s *countingSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += len(p)
	s.last = append(s.last, p...)
	if len(s.last) > 4096 {
		s.last = append(s.last[:0], s.last[len(s.last)-1024:]...)
	}
	return len(p), nil
}

// TestEndlessLineFlatMemory writes one 2 GiB line, in the 32 KiB chunks a
// container's output arrives in, through the writer chain the BuildKit
// path uses (lineWriter -> jobOutput -> the agent's writer), then a line
// with the error. The line is cut at maxLineBytes and marked; the Go heap
// and the process's RSS stay under 200 MiB throughout.
func TestEndlessLineFlatMemory(t *testing.T) {
	const total = 2 << 30
	tok := "tok-" + strings.Repeat("s", 36)
	sink := &countingSink{}
	out := newJobOutput(sink, DefaultLogTailBytes, tok)
	w := newLineWriter(out)

	peak := samplePeakMemory(t)

	chunk := bytes.Repeat([]byte("a"), 32<<10)
	copy(chunk[100:], tok) // a secret in the kept part of the line
	if _, err := w.Write([]byte("start\n")); err != nil {
		t.Fatal(err)
	}
	for written := 0; written < total; written += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		copy(chunk[100:], "aaaa") // only the first chunk holds it
	}
	if _, err := io.WriteString(w, "\nerror: the build failed\n"); err != nil {
		t.Fatal(err)
	}
	w.flush()
	heap, rss := peak()
	t.Logf("peak heap %d MiB, peak RSS %d MiB, %d bytes reached the agent", heap>>20, rss>>20, sink.n)
	if heap >= memoryLimit || rss >= memoryLimit {
		t.Fatalf("peak heap %d MiB, RSS %d MiB: want both < %d MiB", heap>>20, rss>>20, memoryLimit>>20)
	}
	if sink.n > 2*maxLineBytes {
		t.Fatalf("%d bytes reached the agent's writer, want about maxLineBytes (%d)", sink.n, maxLineBytes)
	}
	kept := out.kept()
	wantCut := total - maxLineBytes
	if !strings.Contains(kept, "… "+strconv.Itoa(wantCut)+" bytes truncated …") {
		t.Fatalf("no marker for %d cut bytes in the logs; they end %q", wantCut, kept[max(0, len(kept)-300):])
	}
	if !strings.HasSuffix(kept, "error: the build failed\n") || !strings.HasPrefix(kept, "start\n") {
		t.Fatalf("logs lost their head or their tail: %q ... %q", kept[:20], kept[len(kept)-40:])
	}
	if strings.Contains(kept, tok) || !strings.Contains(kept, "[REDACTED]") {
		t.Fatal("the token in the cut line was not scrubbed")
	}
}

// TestLineSplitterCutsAtSecretPrefix: a line cut at the cap in the middle
// of a secret shows no part of it that could be completed.
func TestLineSplitterCutsAtSecretPrefix(t *testing.T) {
	tok := "tok-" + strings.Repeat("z", 36)
	var sink strings.Builder
	out := newJobOutput(&sink, DefaultLogTailBytes, tok)
	s := lineSplitter{out: out, ends: "\n"}
	line := strings.Repeat("a", maxLineBytes-10) + tok + strings.Repeat("b", 100) + "\nnext\n"
	s.write([]byte(line))
	got := sink.String()
	if strings.Contains(got, "tok-zzzzz") {
		t.Fatalf("the start of the secret shows at the cut: %q", got[len(got)-80:])
	}
	if !strings.HasSuffix(got, " bytes truncated …\nnext\n") {
		t.Fatalf("output ends %q", got[len(got)-80:])
	}
}

// samplePeakMemory samples the Go heap and the process's RSS every 20 ms
// until the returned function is called; that returns their peaks.
func samplePeakMemory(t *testing.T) (stop func() (heap, rss uint64)) {
	var peakHeap, peakRSS atomic.Uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peakHeap.Store(max(peakHeap.Load(), ms.HeapAlloc))
			peakRSS.Store(max(peakRSS.Load(), rss(t)))
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() (uint64, uint64) {
		once.Do(func() { close(done); <-sampled })
		return peakHeap.Load(), peakRSS.Load()
	}
	t.Cleanup(func() { stop() })
	return stop
}

// rss is the process's resident set size, from /proc/self/status.
func rss(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Error(err)
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// A real BuildKit build whose RUN step prints one 2 GiB line finishes
// (failed, as the step exits 1 after it) while the worker's heap and RSS
// stay flat. It takes 30 to 50 s on a loaded 2-core machine.
func TestBuildPrintsEndlessLine(t *testing.T) {
	e := newEnv(t, nil)
	base := baseImage(t)
	e.git.addRepo(t, "acme/endless", repoFiles{files: map[string]string{
		"Dockerfile": "FROM " + base + "\nRUN head -c 2147483648 /dev/zero | tr '\\0' a; echo; echo endless-line-done; exit 1\n",
	}})
	peak := samplePeakMemory(t)
	start := time.Now()
	sink := &countingSink{}
	resp := e.exec.Run(context.Background(), request("job-endless", "acme/endless"), sink)
	heap, rss := peak()
	t.Logf("build took %s; peak heap %d MiB, peak RSS %d MiB; %d bytes reached the agent; logs %d bytes", time.Since(start).Round(time.Second), heap>>20, rss>>20, sink.n, len(resp.GetLogs()))
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
		t.Fatalf("Run() = success %v stage %v error %q, want a build failure", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
	if heap >= memoryLimit || rss >= memoryLimit {
		t.Fatalf("peak heap %d MiB, RSS %d MiB: want both < %d MiB", heap>>20, rss>>20, memoryLimit>>20)
	}
	// BuildKit hands the client only part of the line (about 256 KiB
	// here); what arrives is still cut at maxLineBytes and marked.
	if l := resp.GetLogs(); !strings.Contains(l, " bytes truncated …\n") || !strings.Contains(l, "endless-line-done") {
		t.Fatalf("logs lack the cut line's marker or the output after it; they end %q", l[max(0, len(l)-600):])
	}
	if len(resp.GetLogs()) > DefaultLogTailBytes {
		t.Fatalf("logs of %d bytes, want <= %d", len(resp.GetLogs()), DefaultLogTailBytes)
	}
}
