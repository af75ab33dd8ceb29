package client

import (
	"math"
	"time"
)

// Backoff is a client's reconnect back-off, as logic hints it in
// /goim/nodes/weighted ("backoff": base_delay and max_delay in seconds,
// factor, jitter). Attempt n after a drop (0 for the first) waits
// min(Base × Factor^n, Max), spread uniformly by ±Jitter of itself:
// clients dropped together by a comet that went away come back spread
// over time instead of all at once, and back off further while the comets
// they reach cannot take them. It is gRPC's connection back-off with one
// difference: the first attempt waits too, because a drop is what puts a
// comet's clients in step.
type Backoff struct {
	Base, Max      time.Duration
	Factor, Jitter float64
}

// DefaultBackoff is logic's default hint (base_delay 3, max_delay 300,
// factor 1.8, jitter 0.3), for a client that could not ask logic.
var DefaultBackoff = Backoff{Base: 3 * time.Second, Max: 300 * time.Second, Factor: 1.8, Jitter: 0.3}

// maxDelay bounds Base and Max: a hint of more than a day is absurd.
const maxDelay = 24 * time.Hour

// Normalize returns b with every field a client cannot follow made
// followable: a negative Base or Max, or one over a day, is
// DefaultBackoff's; Max is at least Base; a Factor below 1, NaN or
// infinite is 1; Jitter is clamped to 0..1 (NaN is 0).
func (b Backoff) Normalize() Backoff {
	if b.Base < 0 || b.Base > maxDelay {
		b.Base = DefaultBackoff.Base
	}
	if b.Max < 0 || b.Max > maxDelay {
		b.Max = DefaultBackoff.Max
	}
	b.Max = max(b.Max, b.Base)
	if !(b.Factor >= 1) || math.IsInf(b.Factor, 0) {
		b.Factor = 1
	}
	if !(b.Jitter >= 0) {
		b.Jitter = 0
	}
	b.Jitter = min(b.Jitter, 1)
	return b
}

// Delay is the wait before attempt n (0 for the first after a drop; a
// negative n counts as 0), with r, uniform in [0, 1) (rand.Float64),
// drawing the jitter: r = 0.5 gives the unjittered delay. b is normalized
// first (see Normalize) and r clamped to [0, 1].
func (b Backoff) Delay(n int, r float64) time.Duration {
	b = b.Normalize()
	if !(r >= 0) {
		r = 0
	}
	r = min(r, 1)
	d := float64(b.Base)
	for i := 0; i < n && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	d = min(d, float64(b.Max))
	d *= 1 + b.Jitter*(2*r-1)
	return time.Duration(max(d, 0))
}
