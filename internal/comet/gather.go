package comet

import (
	"context"
	"sync"
)

// gatherer hands requests to a few long-lived workers through a queue. A
// worker takes one request and whatever else is queued then, up to max,
// and handles them together: a lone request goes out at once, and under
// load one call to logic carries many. The workers outlive the connection
// goroutines that feed them: stop drains the queue, then ends them.
type gatherer[T any] struct {
	queue  chan T
	max    int
	handle func([]T)
	// overflow, when set, takes a request that finds the queue full, so
	// put never waits (set it before start).
	overflow func(T)
	stopc    chan struct{} // closed when the workers should drain and stop
	mu       sync.RWMutex  // read-held while queueing; guards stopped
	stopped  bool
	wg       sync.WaitGroup
}

func newGatherer[T any](queue, max int, handle func([]T)) *gatherer[T] {
	return &gatherer[T]{queue: make(chan T, queue), max: max, handle: handle, stopc: make(chan struct{})}
}

// start starts n workers.
func (g *gatherer[T]) start(n int) {
	for range n {
		g.wg.Go(g.work)
	}
}

func (g *gatherer[T]) work() {
	batch := make([]T, 0, g.max)
	for {
		var r T
		select {
		case r = <-g.queue:
		case <-g.stopc:
			select {
			case r = <-g.queue:
			default:
				return
			}
		}
		batch = append(batch[:0], r)
	gather:
		for len(batch) < g.max {
			select {
			case r = <-g.queue:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		g.handle(batch)
		clear(batch)
	}
}

// put queues r, waiting for room in the queue (or, with overflow set,
// handing r to overflow when the queue is full), or handles it on the
// calling goroutine once the workers have stopped (a connection still
// closing after Shutdown gave up waiting for it). The read lock keeps stop
// from stopping the workers while r is being queued, so nothing is left in
// the queue.
func (g *gatherer[T]) put(r T) {
	g.mu.RLock()
	if g.stopped {
		g.mu.RUnlock()
		g.handle([]T{r})
		return
	}
	if g.overflow == nil {
		g.queue <- r // the workers run until stopped is set
		g.mu.RUnlock()
		return
	}
	select {
	case g.queue <- r:
		g.mu.RUnlock()
	default:
		g.mu.RUnlock()
		g.overflow(r)
	}
}

// stop lets the workers handle what is queued and waits for them, or
// until ctx ends. Call it once every goroutine that puts has ended.
func (g *gatherer[T]) stop(ctx context.Context) {
	g.mu.Lock()
	if !g.stopped {
		g.stopped = true
		close(g.stopc)
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
