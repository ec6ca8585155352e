package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLimiter(t *testing.T) {
	clock := &fakeClock{}
	l := newLimiter(2, time.Minute, clock.now)
	if l.limited("a") {
		t.Fatalf("limited(a) = true before any failure, want false")
	}
	if got := l.fail("a"); got {
		t.Errorf("fail(a) #1 = true, want false")
	}
	if got := l.fail("a"); !got {
		t.Errorf("fail(a) #2 = false, want true")
	}
	if !l.limited("a") || l.limited("b") {
		t.Errorf("limited(a), limited(b) = %v, %v, want true, false", l.limited("a"), l.limited("b"))
	}
	clock.advance(time.Minute)
	if l.limited("a") {
		t.Errorf("limited(a) after a minute = true, want false")
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clock := &fakeClock{}
	l := newLimiter(5, time.Minute, clock.now)
	for i := range maxTrackedPeers + 100 {
		l.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if i%1000 == 0 {
			clock.advance(time.Second)
		}
	}
	l.mu.Lock()
	n := len(l.peers)
	l.mu.Unlock()
	if n > maxTrackedPeers {
		t.Errorf("tracked peers = %d, want <= %d", n, maxTrackedPeers)
	}
}

func TestConcurrentReloadAndCalls(t *testing.T) {
	dir := t.TempDir()
	workers := writeFile(t, dir, "workers", "w1:"+tokA+"\n")
	e := startEnv(t, Config{WorkerTokensFile: workers, MaxFailuresPerMinute: -1}, nil)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if _, _, err := e.connect(t, ctx, bearerOpt(tokA)); err != nil && status.Code(err) != codes.Unauthenticated {
					t.Errorf("Connect() = %v", err)
				}
			}
		})
	}
	for i := range 20 {
		content := "w1:" + tokA + "\n"
		if i%2 == 1 {
			content = "w2:" + tokB + "\n"
		}
		writeFile(t, dir, "workers", content)
		if err := e.auth.Reload(); err != nil {
			t.Errorf("Reload() = %v", err)
		}
	}
	wg.Wait()
}
