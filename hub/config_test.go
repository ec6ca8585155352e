package hub

import (
	"testing"
	"time"
)

// withDefaults fills zero fields and refuses values no hub can run with.
func TestConfigWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "zero value", cfg: Config{}},
		{name: "binpack", cfg: Config{Placement: PlacementBinpack}},
		{name: "unknown placement", cfg: Config{Placement: Placement(7)}, wantErr: true},
		{name: "negative duration", cfg: Config{AcceptTimeout: -time.Second}, wantErr: true},
		{name: "no missed heartbeats", cfg: Config{MissedHeartbeats: -1}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.withDefaults()
			if (err != nil) != tc.wantErr {
				t.Fatalf("withDefaults() error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (got.HeartbeatInterval != DefaultHeartbeatInterval || got.Placement != tc.cfg.Placement) {
				t.Errorf("withDefaults() = heartbeat %v, placement %v; want %v, %v", got.HeartbeatInterval, got.Placement, DefaultHeartbeatInterval, tc.cfg.Placement)
			}
		})
	}
}

// ParsePlacement reads what String writes, and nothing else.
func TestParsePlacement(t *testing.T) {
	for _, p := range []Placement{PlacementSpread, PlacementBinpack} {
		if got, err := ParsePlacement(p.String()); err != nil || got != p {
			t.Errorf("ParsePlacement(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	for _, s := range []string{"", "Spread", "pack", "least-loaded"} {
		if _, err := ParsePlacement(s); err == nil {
			t.Errorf("ParsePlacement(%q) = nil error, want one", s)
		}
	}
}
