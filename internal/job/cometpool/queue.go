package cometpool

import "sync"

// Sizes of a queue's ring.
const (
	queueMin  = 16  // first allocation
	queueKeep = 256 // a drained queue shrinks back to this capacity
)

// queue is one worker's FIFO of calls: a ring that grows (doubling) with
// its backlog up to max calls and halves once no more than a quarter full,
// down to queueKeep, so a burst's memory is released as it drains. Send
// pushes, the worker pops.
type queue struct {
	max  int
	wake chan struct{} // capacity 1: signalled when push makes the queue non-empty

	mu   sync.Mutex
	ring []*Call // guarded by mu; len(ring) is the capacity
	head int     // guarded by mu; index of the oldest call
	n    int     // guarded by mu; calls queued
}

func newQueue(limit int) *queue {
	return &queue{max: limit, wake: make(chan struct{}, 1)}
}

// push appends c; it returns false, leaving c to the caller, when the
// queue holds max calls.
func (q *queue) push(c *Call) bool {
	q.mu.Lock()
	if q.n >= q.max {
		q.mu.Unlock()
		return false
	}
	if q.n == len(q.ring) {
		q.resize(min(max(2*len(q.ring), queueMin), q.max))
	}
	i := q.head + q.n
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = c
	q.n++
	first := q.n == 1
	q.mu.Unlock()
	if first {
		// The worker pops until the queue is empty before it waits, so
		// only the push that ends an empty spell needs to wake it.
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// pop removes and returns the oldest call, or nil if there is none.
func (q *queue) pop() *Call {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return nil
	}
	c := q.ring[q.head]
	q.ring[q.head] = nil
	q.head++
	if q.head == len(q.ring) {
		q.head = 0
	}
	q.n--
	if len(q.ring) > queueKeep && q.n <= len(q.ring)/4 {
		q.resize(max(len(q.ring)/2, queueKeep))
	}
	return c
}

// resize moves the calls to a new ring of capacity size >= q.n. q.mu
// must be held.
func (q *queue) resize(size int) {
	ring := make([]*Call, size)
	if end := q.head + q.n; end <= len(q.ring) {
		copy(ring, q.ring[q.head:end])
	} else {
		k := copy(ring, q.ring[q.head:])
		copy(ring[k:], q.ring[:end-len(q.ring)])
	}
	q.ring, q.head = ring, 0
}

// len returns the calls queued.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// capacity returns the length of the ring, for tests.
func (q *queue) capacity() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ring)
}
