package executor

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestShieldFromCancel: a shielded context outlives a cancel but not any
// other end of its parent.
func TestShieldFromCancel(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	shielded, stop := ShieldFromCancel(parent)
	defer stop()
	cancel(&CancelError{Reason: "user"})
	if reason, ok := Cancelled(parent); !ok || reason != "user" {
		t.Errorf("Cancelled(parent) = %q, %v; want \"user\", true", reason, ok)
	}
	select {
	case <-shielded.Done():
		t.Fatalf("shielded context ended on a cancel: %v", context.Cause(shielded))
	case <-time.After(50 * time.Millisecond):
	}

	stopping := errors.New("worker stopping")
	parent2, cancel2 := context.WithCancelCause(context.Background())
	shielded2, stop2 := ShieldFromCancel(parent2)
	defer stop2()
	cancel2(stopping)
	select {
	case <-shielded2.Done():
		if !errors.Is(context.Cause(shielded2), stopping) {
			t.Errorf("shielded cause = %v, want %v", context.Cause(shielded2), stopping)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shielded context outlived its parent's stop")
	}
}
