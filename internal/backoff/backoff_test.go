package backoff

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNextDoublesWithinJitterAndCaps(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	wantMax := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range wantMax {
		w *= time.Millisecond
		if d := b.Next(); d < w/2 || d > w {
			t.Fatalf("Next() #%d = %v, want in [%v, %v]", i, d, w/2, w)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("Next() after Reset = %v, want <= 100ms", d)
	}
}

// TestNextNeverOverflows: far past the cap the delay stays at max instead
// of wrapping around.
func TestNextNeverOverflows(t *testing.T) {
	b := New(time.Millisecond, time.Minute)
	for i := 0; i < 100; i++ {
		if d := b.Next(); d < 0 || d > time.Minute {
			t.Fatalf("Next() #%d = %v, want in [0, 1m]", i, d)
		}
	}
	if d := b.Next(); d < 30*time.Second {
		t.Fatalf("Next() after 100 attempts = %v, want >= 30s (capped at max)", d)
	}
}
