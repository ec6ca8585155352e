package cluster

import (
	"maps"
	"slices"
	"testing"
)

// TestConnectionPorts parses a listing like the one that failed a CI run:
// a connection in its handshake lists client_properties as "none".
func TestConnectionPorts(t *testing.T) {
	listing := []byte(`[
{"peer_port":46352,"client_properties":[["product","longstr","AMQP 0.9.1 Client"],["connection_name","longstr","hub-publish"],["capabilities","table",[["basic.nack","bool",true]]]]}
,{"peer_port":46366,"client_properties":[["connection_name","longstr","control-plane"]]}
,{"peer_port":46400,"client_properties":[["connection_name","longstr","hub-publish"]]}
,{"peer_port":46712,"client_properties":"none"}
]`)
	tests := []struct {
		name string
		want []string
	}{
		{name: "hub-publish", want: []string{"46352", "46400"}},
		{name: "control-plane", want: []string{"46366"}},
		{name: "absent", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports, err := connectionPorts(listing, tt.name)
			if err != nil {
				t.Fatalf("connectionPorts() = %v", err)
			}
			if got := slices.Sorted(maps.Keys(ports)); !slices.Equal(got, tt.want) {
				t.Errorf("connectionPorts(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
	if _, err := connectionPorts([]byte("not json"), "x"); err == nil {
		t.Errorf("connectionPorts(not json) = nil error, want one")
	}
}
