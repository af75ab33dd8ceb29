package job

import "sync"

// Sizes of a poolQueue's ring.
const (
	poolQueueMin  = 16  // first allocation
	poolQueueKeep = 256 // a drained queue shrinks back to this capacity
)

// poolQueue is one worker's FIFO of calls: a ring that grows (doubling)
// with its backlog up to max calls and halves once no more than a quarter
// full, down to poolQueueKeep, so a burst's memory is released as it
// drains. send pushes, the worker pops.
type poolQueue struct {
	max  int
	wake chan struct{} // capacity 1: signalled when push makes the queue non-empty

	mu   sync.Mutex
	ring []*call // guarded by mu; len(ring) is the capacity
	head int     // guarded by mu; index of the oldest call
	n    int     // guarded by mu; calls queued
}

func newPoolQueue(limit int) *poolQueue {
	return &poolQueue{max: limit, wake: make(chan struct{}, 1)}
}

// push appends c; it returns false, leaving c to the caller, when the
// queue holds max calls.
func (q *poolQueue) push(c *call) bool {
	q.mu.Lock()
	if q.n >= q.max {
		q.mu.Unlock()
		return false
	}
	if q.n == len(q.ring) {
		q.resize(min(max(2*len(q.ring), poolQueueMin), q.max))
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
func (q *poolQueue) pop() *call {
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
	if len(q.ring) > poolQueueKeep && q.n <= len(q.ring)/4 {
		q.resize(max(len(q.ring)/2, poolQueueKeep))
	}
	return c
}

// resize moves the calls to a new ring of capacity size >= q.n. q.mu
// must be held.
func (q *poolQueue) resize(size int) {
	ring := make([]*call, size)
	if end := q.head + q.n; end <= len(q.ring) {
		copy(ring, q.ring[q.head:end])
	} else {
		k := copy(ring, q.ring[q.head:])
		copy(ring[k:], q.ring[:end-len(q.ring)])
	}
	q.ring, q.head = ring, 0
}

// len returns the calls queued.
func (q *poolQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// capacity returns the length of the ring, for tests.
func (q *poolQueue) capacity() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ring)
}
