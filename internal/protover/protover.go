package protover

import "fmt"

const (
	// Current is the protocol version this build speaks.
	Current uint32 = 1
	// Oldest is the oldest worker protocol version a hub of this build
	// accepts.
	Oldest uint32 = 1
	// Unnumbered is the version of a peer that sends none (0).
	Unnumbered uint32 = 1
)

// Feature names (Register.features, Registered.features).
const (
	// FeatureDrainReject: once draining (Drain, or its own SIGTERM), the
	// worker answers every RunJob with JobRejected(DRAINING) and says it
	// is draining in its next Heartbeat at once.
	FeatureDrainReject = "drain-reject"
	// FeatureDrainRequeue: the hub hands a job a draining worker rejected
	// to another worker or back to the queue at once.
	FeatureDrainRequeue = "drain-requeue"
	// FeatureJobProgress: the hub takes JobProgress frames and shows the
	// stage of each running job; the worker sends them only to a hub
	// that announces it.
	FeatureJobProgress = "job-progress"
)

// Bounds on a feature list.
const (
	MaxFeatures   = 32
	MaxFeatureLen = 64
)

// Effective is the version a peer speaks when it sent v: 0 is Unnumbered.
func Effective(v uint32) uint32 {
	if v == 0 {
		return Unnumbered
	}
	return v
}

// UnsupportedError is a version outside [Min, Max].
type UnsupportedError struct {
	Got, Min, Max uint32
}

func (e *UnsupportedError) Error() string {
	switch {
	case e.Got < e.Min:
		return fmt.Sprintf("worker protocol version %d is too old: this hub speaks versions %d to %d; upgrade the worker", e.Got, e.Min, e.Max)
	default:
		return fmt.Sprintf("worker protocol version %d is too new: this hub speaks versions %d to %d; upgrade the hub", e.Got, e.Min, e.Max)
	}
}

// Check returns the version a peer that sent v speaks, or an
// *UnsupportedError when it is outside [lo, hi].
func Check(v, lo, hi uint32) (uint32, error) {
	got := Effective(v)
	if got < lo || got > hi {
		return got, &UnsupportedError{Got: got, Min: lo, Max: hi}
	}
	return got, nil
}

// ValidFeatures checks a feature list's bounds.
func ValidFeatures(features []string) error {
	if len(features) > MaxFeatures {
		return fmt.Errorf("at most %d features", MaxFeatures)
	}
	for _, f := range features {
		if f == "" || len(f) > MaxFeatureLen {
			return fmt.Errorf("feature names must be 1 to %d bytes", MaxFeatureLen)
		}
	}
	return nil
}
