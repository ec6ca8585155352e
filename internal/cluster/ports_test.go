package cluster

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortBase(t *testing.T) {
	offsets := []int{0, 3, PrivateBrokerDistOffset}
	base, err := FreePortBase(offsets...)
	if err != nil {
		t.Fatalf("FreePortBase(%v) error = %v", offsets, err)
	}
	lo := ephemeralLow()
	for _, o := range offsets {
		port := base + o
		if port < portFloor || port >= lo {
			t.Errorf("FreePortBase(%v) = %d: port %d outside [%d, %d)", offsets, base, port, portFloor, lo)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Errorf("listen on port %d of FreePortBase(%v): %v", port, offsets, err)
			continue
		}
		ln.Close()
	}
	if _, err := FreePortBase(lo); err == nil {
		t.Errorf("FreePortBase(%d) = nil error, want one: no room below the ephemeral range", lo)
	}
}
