package hub

import (
	"fmt"
	"testing"
	"time"
)

func TestTombstonesBoundedByCount(t *testing.T) {
	const max = 100
	ts := newTombstones(time.Hour, max)
	now := time.Now()
	for i := range 10 * max {
		ts.add(fmt.Sprintf("job-%d", i), "", now)
		if ts.len() > max || len(ts.byID) > max {
			t.Fatalf("after %d adds: %d entries, %d ids; bound %d", i+1, ts.len(), len(ts.byID), max)
		}
		if cap(ts.order) > 4*max {
			t.Fatalf("after %d adds: backing array of %d entries for a bound of %d", i+1, cap(ts.order), max)
		}
	}
	if _, ok := ts.take("job-0", now); ok {
		t.Fatal("the oldest cancel is still remembered past the bound")
	}
	if _, ok := ts.take(fmt.Sprintf("job-%d", 10*max-1), now); !ok {
		t.Fatal("the newest cancel was forgotten")
	}
}

func TestTombstonesRecancelKeepsBound(t *testing.T) {
	const max = 10
	ts := newTombstones(time.Hour, max)
	now := time.Now()
	for range 1000 {
		ts.add("same-job", "again", now)
	}
	if ts.len() > max || len(ts.byID) != 1 {
		t.Fatalf("%d entries, %d ids after re-cancelling one job", ts.len(), len(ts.byID))
	}
	if reason, ok := ts.take("same-job", now); !ok || reason != "again" {
		t.Fatalf("take = %q, %v; want the cancel remembered", reason, ok)
	}
}

func TestTombstonesExpire(t *testing.T) {
	ts := newTombstones(time.Minute, 100)
	now := time.Now()
	ts.add("old", "r", now)
	if _, ok := ts.take("old", now.Add(2*time.Minute)); ok {
		t.Fatal("an expired cancel was still applied")
	}
	ts.add("a", "r", now)
	ts.add("b", "r", now.Add(2*time.Minute)) // prunes a
	if ts.len() != 1 {
		t.Fatalf("%d entries after the first expired; want 1", ts.len())
	}
	if reason, ok := ts.take("b", now.Add(2*time.Minute)); !ok || reason != "r" {
		t.Fatalf("take(b) = %q, %v", reason, ok)
	}
	if _, ok := ts.take("b", now.Add(2*time.Minute)); ok {
		t.Fatal("a cancel was applied twice")
	}
}
