package jobspec

import "testing"

// TestLabelsMatch pins the argument order: a worker with more labels than a
// job asks for matches it, and swapping the arguments does not.
func TestLabelsMatch(t *testing.T) {
	gpuWorker := map[string]string{"arch": "amd64", "gpu": "a100"}
	tests := []struct {
		name         string
		jobLabels    map[string]string
		workerLabels map[string]string
		want         bool
	}{
		{name: "job asks nothing", jobLabels: nil, workerLabels: gpuWorker, want: true},
		{name: "worker carries every asked label", jobLabels: map[string]string{"gpu": "a100"}, workerLabels: gpuWorker, want: true},
		{name: "arguments swapped", jobLabels: gpuWorker, workerLabels: map[string]string{"gpu": "a100"}, want: false},
		{name: "worker lacks the label", jobLabels: map[string]string{"gpu": "a100"}, workerLabels: map[string]string{"arch": "amd64"}, want: false},
		{name: "other value", jobLabels: map[string]string{"gpu": "h100"}, workerLabels: gpuWorker, want: false},
		{name: "empty value asked, label absent", jobLabels: map[string]string{"gpu": ""}, workerLabels: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LabelsMatch(tt.jobLabels, tt.workerLabels); got != tt.want {
				t.Errorf("LabelsMatch(%v, %v) = %v, want %v", tt.jobLabels, tt.workerLabels, got, tt.want)
			}
		})
	}
}
