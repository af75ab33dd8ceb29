package comet

import (
	"context"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"

	logicpb "github.com/goim/goim/api/logic"
)

// Disconnects go to logic from a few long-lived workers instead of from
// each closing connection's goroutine: a mass disconnect (a network blip,
// a drain) then costs disconnectWorkers grown stacks and gRPC calls in
// flight, not one per connection at once (10,000 closing connections held
// ~80 MB of transient stacks and call state). A closing connection waits
// only for room in the queue.
const (
	disconnectWorkers = 8
	disconnectQueue   = 4096
)

type disconnectReq struct {
	mid int64
	key string
}

// startDisconnects starts the workers; stopDisconnects ends them.
func (s *Server) startDisconnects() {
	for range disconnectWorkers {
		s.dwg.Add(1)
		go func() {
			defer s.dwg.Done()
			for {
				select {
				case r := <-s.disconnects:
					s.disconnect(r)
				case <-s.dstop:
					for {
						select {
						case r := <-s.disconnects:
							s.disconnect(r)
						default:
							return
						}
					}
				}
			}
		}()
	}
}

// queueDisconnect hands a closed session to the workers, or sends it
// itself once they have stopped (a connection still closing after
// Shutdown gave up waiting for it). The read lock keeps stopDisconnects
// from stopping the workers while a request is being queued, so nothing
// is left in the queue.
func (s *Server) queueDisconnect(mid int64, key string) {
	r := disconnectReq{mid: mid, key: key}
	s.dmu.RLock()
	if !s.dstopped {
		s.disconnects <- r // the workers run until dstopped is set
		s.dmu.RUnlock()
		return
	}
	s.dmu.RUnlock()
	s.disconnect(r)
}

// stopDisconnects sends what is queued and waits for the workers, or until
// ctx ends. Call it once every connection goroutine has ended.
func (s *Server) stopDisconnects(ctx context.Context) {
	s.dmu.Lock()
	if !s.dstopped {
		s.dstopped = true
		close(s.dstop)
	}
	s.dmu.Unlock()
	done := make(chan struct{})
	go func() {
		s.dwg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (s *Server) disconnect(r disconnectReq) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Logic.Timeout.D())
	defer cancel()
	if _, err := s.logic.Disconnect(ctx, &logicpb.DisconnectReq{Mid: r.mid, Key: r.key, Server: s.cfg.Host}); err != nil {
		s.log.Warn("comet: logic disconnect failed", "mid", r.mid, "key", r.key, "err", err)
	}
}

// After a burst of connections or disconnections the heap holds free
// pages, or garbage not yet collected, that Go returns to the system only
// slowly: it keeps up to its heap goal, twice the live heap by default.
// Every releaseCheck, once the connection count has settled (it moved
// less than 1 % since the previous check), the comet returns it at once
// (debug.FreeOSMemory: one garbage collection) when the count moved by a
// tenth (at least releaseMinMove) since the last release, or when a
// quarter of the heap, and releaseMinFree, is free. After 10,000 clients
// left, RSS went back to about twice the idle start instead of staying
// several times above it.
const (
	releaseCheck   = 10 * time.Second
	releaseMinFree = 8 << 20
	releaseMinMove = 1000
)

func (s *Server) releaseLoop() {
	t := time.NewTicker(releaseCheck)
	defer t.Stop()
	var r releaser
	r.last = s.conns.Load()
	r.base = r.last
	for {
		select {
		case <-s.done:
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
	n := s.conns.Load()
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
