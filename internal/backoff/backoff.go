package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is one reconnect loop's sequence of delays.
type Backoff struct {
	min, max time.Duration
	attempt  int
}

// New returns a Backoff whose first delay is at most min and whose delays
// never exceed max.
func New(min, max time.Duration) *Backoff {
	return &Backoff{min: min, max: max}
}

// Next returns the delay before the next attempt and advances the
// sequence.
func (b *Backoff) Next() time.Duration {
	d := b.max
	if b.attempt < 32 {
		if s := b.min << b.attempt; s > 0 && s < b.max {
			d = s
		}
	}
	b.attempt++
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Reset starts the sequence again at min.
func (b *Backoff) Reset() { b.attempt = 0 }
