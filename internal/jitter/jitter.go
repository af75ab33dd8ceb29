// Package jitter spreads durations, so that many processes or
// connections that would wait the same time (a retry, a report period) do
// not all wake at once.
package jitter

import (
	"math/rand/v2"
	"time"
)

// Spread returns d ± frac·d, uniformly: Spread(10s, 0.2) is in [8s, 12s].
// frac is clamped to [0, 1]; d <= 0 is returned as is.
func Spread(d time.Duration, frac float64) time.Duration {
	if d <= 0 {
		return d
	}
	frac = min(max(frac, 0), 1)
	span := time.Duration(float64(d) * frac)
	return d - span + rand.N(2*span+1)
}
