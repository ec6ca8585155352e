package protover

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name      string
		sent      uint32
		lo, hi    uint32
		want      uint32
		wantErr   bool
		errSubstr []string
	}{
		{name: "unnumbered is one", sent: 0, lo: 1, hi: 1, want: 1},
		{name: "in range", sent: 2, lo: 1, hi: 3, want: 2},
		{name: "too new", sent: 99, lo: 1, hi: 1, want: 99, wantErr: true, errSubstr: []string{"99", "1 to 1", "too new"}},
		{name: "unnumbered too old", sent: 0, lo: 2, hi: 3, want: 1, wantErr: true, errSubstr: []string{"version 1", "2 to 3", "too old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Check(tt.sent, tt.lo, tt.hi)
			if got != tt.want {
				t.Errorf("Check(%d, %d, %d) = %d, want %d", tt.sent, tt.lo, tt.hi, got, tt.want)
			}
			var ue *UnsupportedError
			if (err != nil) != tt.wantErr || (err != nil && !errors.As(err, &ue)) {
				t.Fatalf("Check(%d, %d, %d) error = %v, want an *UnsupportedError: %v", tt.sent, tt.lo, tt.hi, err, tt.wantErr)
			}
			for _, s := range tt.errSubstr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestValidFeatures(t *testing.T) {
	if err := ValidFeatures([]string{FeatureDrainReject}); err != nil {
		t.Errorf("ValidFeatures(drain-reject) = %v, want nil", err)
	}
	if err := ValidFeatures([]string{""}); err == nil {
		t.Error("ValidFeatures(empty name) = nil, want an error")
	}
	if err := ValidFeatures(make([]string, MaxFeatures+1)); err == nil {
		t.Error("ValidFeatures(too many) = nil, want an error")
	}
}
