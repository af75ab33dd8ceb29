package admin

import (
	"os"
	"runtime/debug"
)

// ServiceGCPercent is the garbage collector's target for logic and job
// when the GOGC environment variable is not set. Their live heap is a few
// megabytes while a connect burst or a push flood allocates tens to
// hundreds of megabytes a second, so with Go's default of 100 the
// collector runs tens of times a second and takes a large share of their
// CPU; at 400 it runs about a quarter as often (docs/benchmark.md has the
// measurements). Their heap then peaks at about five times the live heap
// instead of twice. The comet keeps Go's default: its live heap
// grows with its connections, and its memory per connection is a target.
const ServiceGCPercent = 400

// SetGCPercent sets the collector's target to percent unless the GOGC
// environment variable sets it, and returns the target in force and
// whether it came from GOGC.
func SetGCPercent(percent int) (int, bool) {
	if os.Getenv("GOGC") != "" {
		p := debug.SetGCPercent(100) // read the value GOGC set...
		debug.SetGCPercent(p)        // ...and keep it
		return p, true
	}
	debug.SetGCPercent(percent)
	return percent, false
}
