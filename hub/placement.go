package hub

import "fmt"

// Placement is how the hub chooses among the free workers that can take a
// job (Config.Placement). Both only ever pick a worker with a free slot
// whose labels match.
type Placement int

const (
	// PlacementSpread (the default) gives a job to the least-loaded worker
	// (running jobs / slots): builds share the fleet's machines evenly,
	// each with as much of its machine as the fleet allows.
	PlacementSpread Placement = iota
	// PlacementBinpack gives a job to the most-loaded worker that still
	// has a free slot, and to an idle one only when none has: the fleet's
	// work gathers on as few machines as possible, so the rest stay idle
	// (an autoscaler can remove them), and a busy worker's frames travel
	// together, which costs the hub and the workers fewer system calls per
	// job (docs/design/dispatch-throughput.md). Nomad's "binpack" scheduler is the
	// same idea.
	PlacementBinpack
)

// String returns the flag spelling: "spread" or "binpack".
func (p Placement) String() string {
	switch p {
	case PlacementSpread:
		return "spread"
	case PlacementBinpack:
		return "binpack"
	}
	return fmt.Sprintf("Placement(%d)", int(p))
}

// ParsePlacement reads the flag spelling of a Placement.
func ParsePlacement(s string) (Placement, error) {
	switch s {
	case "spread":
		return PlacementSpread, nil
	case "binpack":
		return PlacementBinpack, nil
	}
	return 0, fmt.Errorf("unknown placement %q: want spread or binpack", s)
}

// valid reports whether p is one of the placements above.
func (p Placement) valid() bool { return p == PlacementSpread || p == PlacementBinpack }

// MarshalText writes the flag spelling (flag.TextVar, JSON).
func (p Placement) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("unknown %v", p)
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads the flag spelling.
func (p *Placement) UnmarshalText(b []byte) error {
	v, err := ParsePlacement(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}
