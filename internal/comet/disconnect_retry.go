package comet

import (
	"context"
	"sync"
	"time"

	"github.com/goim/goim/internal/syncx"
)

// A disconnect that fails because logic (or its Redis) is unavailable or
// too slow is not dropped: the session's routing would stay in Redis until
// its TTL (session_ttl, 30 min), and pushes to its key or member would go
// to this comet for nothing. It is held by the retrier and sent again after
// a backoff (disconnectRetryFirst, doubling up to disconnectRetryMaxWait)
// until logic.disconnect_retry after its first failure; then it is given up
// and counted in goim_comet_disconnects_abandoned_total. Sending it again
// is safe: logic deletes a session only where it still belongs to the
// connection id the disconnect carries.
//
// The retrier also takes the disconnects that find the workers' queue full,
// so a closing connection never waits for logic: they are sent at once by
// the retrier's goroutine, next to the workers.
const (
	disconnectRetryFirst   = 500 * time.Millisecond
	disconnectRetryMaxWait = 8 * time.Second
	// disconnectRetryPending bounds the sessions held (about 100 bytes
	// each); one more is given up at once.
	disconnectRetryPending = 1 << 16
)

// retryItem is a disconnect waiting in the retrier.
type retryItem struct {
	req   disconnectReq
	since time.Time     // when it entered the retrier
	next  time.Time     // when to send it
	wait  time.Duration // the backoff that led to next (0: not failed yet)
}

// disconnectRetrier holds disconnects to send again and sends them from one
// goroutine, in batches, when they are due.
type disconnectRetrier struct {
	// send sends a batch and returns the disconnects that failed in a way
	// worth retrying.
	send      func([]disconnectReq) []disconnectReq
	retried   func(n int) // counts disconnects sent again after a failure
	abandoned func(n int) // counts disconnects given up
	first     time.Duration
	maxWait   time.Duration
	window    time.Duration // retried until this long after entering; 0: never retried
	max       int           // items held at most
	batch     int           // disconnects per send at most

	mu      sync.Mutex
	items   []retryItem // guarded by mu
	started bool        // guarded by mu
	stopped bool        // guarded by mu: add gives up at once
	stopCtx context.Context
	wake    chan struct{}  // 1-buffered: items were added
	stopc   chan struct{}  // closed by stop
	wg      sync.WaitGroup // run
}

func newDisconnectRetrier(window time.Duration, send func([]disconnectReq) []disconnectReq, retried, abandoned func(int)) *disconnectRetrier {
	return &disconnectRetrier{
		send: send, retried: retried, abandoned: abandoned,
		first: disconnectRetryFirst, maxWait: disconnectRetryMaxWait, window: window,
		max: disconnectRetryPending, batch: disconnectMaxBatch,
		wake: make(chan struct{}, 1), stopc: make(chan struct{}),
	}
}

// failed takes disconnects that failed: they are sent again after the
// first backoff, or given up when retries are off, the retrier is full or
// stopped. It never blocks on logic.
func (r *disconnectRetrier) failed(reqs []disconnectReq) {
	if r.window <= 0 {
		r.abandoned(len(reqs))
		return
	}
	r.add(reqs, r.first)
}

// overflow takes disconnects that found the workers' queue full: they are
// sent as soon as the retrier's goroutine gets to them.
func (r *disconnectRetrier) overflow(req disconnectReq) {
	r.add([]disconnectReq{req}, 0)
}

func (r *disconnectRetrier) add(reqs []disconnectReq, wait time.Duration) {
	now := time.Now()
	r.mu.Lock()
	lost := 0
	if r.stopped {
		lost = len(reqs)
	} else {
		if room := r.max - len(r.items); len(reqs) > room {
			lost = len(reqs) - max(room, 0)
			reqs = reqs[:max(room, 0)]
		}
		for _, q := range reqs {
			r.items = append(r.items, retryItem{req: q, since: now, next: now.Add(wait), wait: wait})
		}
	}
	r.mu.Unlock()
	if lost > 0 {
		r.abandoned(lost)
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// pending is the number of disconnects held.
func (r *disconnectRetrier) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.items)
}

// run sends due disconnects until stop, then tries what is left once more
// (until stop's context ends) and gives up the rest.
func (r *disconnectRetrier) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.sendAll(r.take(time.Now(), false))
		timer.Stop()
		if next := r.nextDue(); !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-r.wake:
		case <-timer.C:
		case <-r.stopc:
			r.flush()
			return
		}
	}
}

// take removes and returns the items due at now (every item when all is
// set).
func (r *disconnectRetrier) take(now time.Time, all bool) (due []retryItem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.items[:0]
	for _, it := range r.items {
		if all || !it.next.After(now) {
			due = append(due, it)
		} else {
			kept = append(kept, it)
		}
	}
	clear(r.items[len(kept):])
	r.items = kept
	return due
}

// nextDue is when the earliest held item is due (zero: none held).
func (r *disconnectRetrier) nextDue() (next time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, it := range r.items {
		if next.IsZero() || it.next.Before(next) {
			next = it.next
		}
	}
	return next
}

// sendAll sends due in batches and puts back, with the next backoff, those
// that failed again, or gives them up once the next attempt would fall
// after the window.
func (r *disconnectRetrier) sendAll(due []retryItem) {
	for len(due) > 0 {
		n := min(len(due), r.batch)
		chunk := due[:n]
		due = due[n:]
		reqs := make([]disconnectReq, n)
		again := 0
		for i, it := range chunk {
			reqs[i] = it.req
			if it.wait > 0 {
				again++
			}
		}
		if again > 0 {
			r.retried(again)
		}
		failed := r.send(reqs)
		if len(failed) == 0 {
			continue
		}
		r.reschedule(chunk, failed)
	}
}

// reschedule puts the items of chunk whose request is in failed back with
// a doubled backoff, or gives them up.
func (r *disconnectRetrier) reschedule(chunk []retryItem, failed []disconnectReq) {
	isFailed := make(map[disconnectReq]bool, len(failed))
	for _, q := range failed {
		isFailed[q] = true
	}
	now := time.Now()
	lost := 0
	r.mu.Lock()
	for _, it := range chunk {
		if !isFailed[it.req] {
			continue
		}
		wait := min(max(2*it.wait, r.first), r.maxWait)
		next := now.Add(wait)
		if r.stopped || next.Sub(it.since) > r.window {
			lost++
			continue
		}
		it.next, it.wait = next, wait
		r.items = append(r.items, it)
	}
	r.mu.Unlock()
	if lost > 0 {
		r.abandoned(lost)
	}
}

// flush sends every held disconnect once more while stop's context lasts,
// and gives up what is left.
func (r *disconnectRetrier) flush() {
	r.mu.Lock()
	ctx := r.stopCtx
	r.mu.Unlock()
	due := r.take(time.Time{}, true)
	for len(due) > 0 && ctx.Err() == nil {
		n := min(len(due), r.batch)
		reqs := make([]disconnectReq, n)
		for i, it := range due[:n] {
			reqs[i] = it.req
		}
		due = due[n:]
		if failed := r.send(reqs); len(failed) > 0 {
			r.abandoned(len(failed))
		}
	}
	if len(due) > 0 {
		r.abandoned(len(due))
	}
}

// start runs the retrier's goroutine.
func (r *disconnectRetrier) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started && !r.stopped {
		r.started = true
		r.wg.Go(r.run)
	}
}

// stop makes the goroutine send what it holds once more and waits for it,
// or until ctx ends. Disconnects added after stop are given up. Call it
// after the workers have stopped.
func (r *disconnectRetrier) stop(ctx context.Context) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	r.stopCtx = ctx
	started := r.started
	r.mu.Unlock()
	close(r.stopc)
	if !started {
		r.abandoned(len(r.take(time.Time{}, true)))
		return
	}
	syncx.Wait(ctx, &r.wg)
}
