// Package gather batches requests for a few long-lived workers: a worker
// takes one request and whatever else is queued at that moment, and
// handles them together. A lone request is handled at once (nothing waits
// for company), and under load one call carries many requests.
package gather

import (
	"context"
	"sync"

	"github.com/goim/goim/internal/syncx"
)

// Gatherer hands requests to a few long-lived workers through a queue. A
// worker takes one request and whatever else is queued then, up to max,
// and handles them together. The workers outlive the goroutines that feed
// them: Stop drains the queue, then ends them.
type Gatherer[T any] struct {
	queue  chan T
	max    int
	handle func([]T)
	// Overflow, when set, takes a request that finds the queue full, so
	// Put never waits (set it before Start).
	Overflow func(T)
	stopc    chan struct{} // closed when the workers should drain and stop
	mu       sync.RWMutex  // read-held while queueing; guards stopped
	stopped  bool
	wg       sync.WaitGroup
}

// New returns a Gatherer whose workers call handle with batches of at
// most max requests, from a queue of queue requests.
func New[T any](queue, max int, handle func([]T)) *Gatherer[T] {
	return &Gatherer[T]{queue: make(chan T, queue), max: max, handle: handle, stopc: make(chan struct{})}
}

// Queued is how many requests wait in the queue now.
func (g *Gatherer[T]) Queued() int { return len(g.queue) }

// Start starts n workers.
func (g *Gatherer[T]) Start(n int) {
	for range n {
		g.wg.Go(g.work)
	}
}

func (g *Gatherer[T]) work() {
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

// Put queues r, waiting for room in the queue (or, with Overflow set,
// handing r to Overflow when the queue is full), or handles it on the
// calling goroutine once the workers have stopped (a caller still running
// after its owner's shutdown gave up waiting for it). The read lock keeps
// Stop from stopping the workers while r is being queued, so nothing is
// left in the queue.
func (g *Gatherer[T]) Put(r T) {
	g.mu.RLock()
	if g.stopped {
		g.mu.RUnlock()
		g.handle([]T{r})
		return
	}
	if g.Overflow == nil {
		g.queue <- r // the workers run until stopped is set
		g.mu.RUnlock()
		return
	}
	select {
	case g.queue <- r:
		g.mu.RUnlock()
	default:
		g.mu.RUnlock()
		g.Overflow(r)
	}
}

// PutContext is Put, but when the queue is full it waits for room only
// until ctx ends, and then returns ctx's error without queueing r; a ctx
// that has already ended queues nothing. It returns nil once r is queued,
// or handled after Stop. With Overflow set it never waits, as Put.
func (g *Gatherer[T]) PutContext(ctx context.Context, r T) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if g.Overflow != nil || ctx.Done() == nil {
		g.Put(r)
		return nil
	}
	g.mu.RLock()
	if g.stopped {
		g.mu.RUnlock()
		g.handle([]T{r})
		return nil
	}
	select {
	case g.queue <- r:
		g.mu.RUnlock()
		return nil
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
}

// Stop lets the workers handle what is queued and waits for them, or
// until ctx ends. Call it once every goroutine that puts has ended.
func (g *Gatherer[T]) Stop(ctx context.Context) {
	g.mu.Lock()
	if !g.stopped {
		g.stopped = true
		close(g.stopc)
	}
	g.mu.Unlock()
	syncx.Wait(ctx, &g.wg)
}
