package comet

import (
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// After a burst of connections or disconnections the heap holds free
// pages, or garbage not yet collected, that Go returns to the system only
// slowly: it keeps up to its heap goal, twice the live heap by default.
// Every releaseCheck, once the connection count has settled (it moved
// less than 1 % since the previous check), the comet returns it at once
// (debug.FreeOSMemory: one garbage collection) when the count moved by a
// tenth (at least releaseMinMove) since the last release, or when a
// quarter of the heap, and releaseMinFree, is free. So the comet's RSS
// follows its connection count down after a burst instead of staying near
// its peak.
const (
	releaseCheck   = 10 * time.Second
	releaseMinFree = 8 << 20
	releaseMinMove = 1000
)

func (s *Server) releaseLoop() {
	t := time.NewTicker(releaseCheck)
	defer t.Stop()
	var r releaser
	r.last = s.limits.conns.Load()
	r.base = r.last
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		r.step(s)
	}
}

// releaser is the release loop's state.
type releaser struct {
	last int64 // connections at the previous check
	base int64 // connections at the last release (or the start)
}

// step is one check.
func (r *releaser) step(s *Server) {
	n := s.limits.conns.Load()
	last := r.last
	r.last = n
	if max(n-last, last-n) > max(n/100, 10) {
		return // not settled
	}
	moved := max(n-r.base, r.base-n) >= max(r.base/10, releaseMinMove)
	if !moved {
		samples := []rtmetrics.Sample{
			{Name: "/memory/classes/heap/free:bytes"},
			{Name: "/memory/classes/heap/objects:bytes"},
			{Name: "/memory/classes/heap/unused:bytes"},
		}
		rtmetrics.Read(samples)
		var v [3]uint64
		for i, sm := range samples {
			if sm.Value.Kind() == rtmetrics.KindUint64 {
				v[i] = sm.Value.Uint64()
			}
		}
		if !shouldRelease(v[0], v[0]+v[1]+v[2]) {
			return
		}
	}
	debug.FreeOSMemory()
	s.metrics.releases.Inc()
	r.base = n
}

// shouldRelease: enough of the heap is free to be worth a collection.
func shouldRelease(free, heap uint64) bool {
	return free >= releaseMinFree && 4*free >= heap
}
