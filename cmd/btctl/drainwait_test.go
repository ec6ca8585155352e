package main

import (
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestDrainedIdle(t *testing.T) {
	const (
		draining = blacktreev1.WorkerState_WORKER_STATE_DRAINING
		dead     = blacktreev1.WorkerState_WORKER_STATE_DEAD
	)
	tests := []struct {
		name string
		w    *blacktreev1.WorkerInfo
		want bool
	}{
		{name: "not listed", w: nil},
		{name: "not fenced yet", w: &blacktreev1.WorkerInfo{State: draining}},
		{name: "fenced, running a job", w: &blacktreev1.WorkerInfo{State: draining, Fenced: true, RunningJobIds: []string{"j"}}},
		{name: "disconnected", w: &blacktreev1.WorkerInfo{State: dead, Fenced: true}},
		{name: "fenced and idle", w: &blacktreev1.WorkerInfo{State: draining, Fenced: true}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := drainedIdle(tt.w); got != tt.want {
				t.Errorf("drainedIdle(%v) = %v, want %v (%s)", tt.w, got, tt.want, drainProgress(tt.w))
			}
		})
	}
}
