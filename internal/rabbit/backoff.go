package rabbit

import (
	"math/rand/v2"
	"time"
)

// backoff is a jittered exponential backoff: attempt n waits a random
// duration in [d/2, d] where d = min·2ⁿ capped at max ("equal jitter"), so
// replicas that lost the broker together do not reconnect in lockstep.
// Not safe for concurrent use; each reconnect loop owns one.
type backoff struct {
	min, max time.Duration
	attempt  int
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max}
}

// next returns the delay before the next attempt and advances the sequence.
func (b *backoff) next() time.Duration {
	d := b.max
	if b.attempt < 32 {
		if s := b.min << b.attempt; s > 0 && s < b.max {
			d = s
		}
	}
	b.attempt++
	half := d / 2
	return half + rand.N(d-half+1)
}

// reset starts the sequence again at min.
func (b *backoff) reset() { b.attempt = 0 }
