package dao

import (
	"context"
	"errors"
	"sync"
)

// Concurrent AddSession calls (a reconnect storm: every comet calling
// Connect at once) are coalesced: each one's commands go into a shared
// pipeline, so N sessions cost one write and one read system call on
// each side instead of N. A call never waits for others to gather: a
// worker takes whatever is queued when it becomes free, so a lone call is
// sent at once, and with addWorkers pipelines in flight the queue forms
// only under load.
const (
	addWorkers  = 2   // pipelines in flight at once (1 measured best, 2 keeps one slow pipeline from stalling all)
	addMaxBatch = 128 // sessions per pipeline at most
	addQueue    = 1024
)

// addReq is one queued AddSession.
type addReq struct {
	mid         int64
	key, server string
	connID      uint64
	done        chan error // buffered: the worker never blocks on it
}

// addBatcher owns the queue and the workers; they start with the first
// AddSession and stop at Close.
type addBatcher struct {
	once   sync.Once
	mu     sync.RWMutex // held (read) while enqueueing; Close takes it to close queue
	closed bool
	queue  chan *addReq
	wg     sync.WaitGroup
}

// queueAdd queues a session for the workers, waiting for room in the
// queue or for ctx.
func (r *Redis) queueAdd(ctx context.Context, req *addReq) error {
	b := &r.adds
	b.once.Do(func() {
		b.queue = make(chan *addReq, addQueue)
		for range addWorkers {
			b.wg.Go(func() { r.addLoop() })
		}
	})
	req.done = make(chan error, 1)
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	select {
	case b.queue <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitAdd waits for a queued session's pipeline or for ctx.
func (r *Redis) waitAdd(ctx context.Context, req *addReq) error {
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		// The write still completes (it is idempotent); the caller has
		// given up on knowing.
		return ctx.Err()
	}
}

// addLoop is one worker: it takes a request, everything else already
// queued (up to addMaxBatch), and writes them in one pipeline.
func (r *Redis) addLoop() {
	batch := make([]*addReq, 0, addMaxBatch)
	for req := range r.adds.queue {
		batch = append(batch[:0], req)
	gather:
		for len(batch) < addMaxBatch {
			select {
			case more, ok := <-r.adds.queue:
				if !ok {
					break gather
				}
				batch = append(batch, more)
			default:
				break gather
			}
		}
		r.writeSessions(batch)
		clear(batch)
	}
}

// writeSessions sends every request's commands in one pipeline and tells
// each its own result: a Redis error in one session's replies fails only
// that session.
//
// conn_<key> is written first: a pipeline is not atomic, and a compare-and-
// delete script of the connection being replaced can run between two of
// its commands. Once conn_ holds the new id that script finds the key not
// its own; before, it runs wholly before the new routing is written. (In
// cluster mode conn_ and key_ share a slot, so they stay in this order in
// their master's pipeline.)
func (r *Redis) writeSessions(batch []*addReq) {
	ctx, cancel := context.WithTimeout(context.Background(), r.readTimeout)
	defer cancel()
	cmds := make([]command, 0, 4*len(batch))
	owner := make([]int, 0, 4*len(batch)) // owner[j]: the request of cmds[j]
	add := func(i int, key, name string, args ...any) {
		cmds = append(cmds, command{key: key, name: name, args: args})
		owner = append(owner, i)
	}
	for i, q := range batch {
		ck := r.connKey(q.key)
		if q.connID != 0 {
			add(i, ck, "SET", ck, connIDArg(q.connID), "PX", r.sessionTTL)
		} else {
			add(i, ck, "DEL", ck)
		}
		if q.mid > 0 {
			mk := r.midKey(q.mid)
			add(i, mk, "HSET", mk, q.key, q.server)
			add(i, mk, "PEXPIRE", mk, r.sessionTTL)
		}
		kk := r.keyKey(q.key)
		add(i, kk, "SET", kk, q.server, "PX", r.sessionTTL)
	}
	err := r.exec(ctx, cmds)
	errs := make([]error, len(batch))
	for j := range cmds {
		if i := owner[j]; errs[i] == nil {
			errs[i] = cmds[j].err
		}
	}
	for i, q := range batch {
		e := errs[i]
		if err != nil {
			e = err
		}
		if e != nil {
			e = &opError{kind: ErrRedis, op: sessionOp("add session", q.mid, q.server), err: e}
		}
		q.done <- e
	}
}

// closeAdds stops the workers after the queued sessions were written (or
// failed: the pool may be closed already).
func (r *Redis) closeAdds() {
	b := &r.adds
	b.once.Do(func() {}) // an AddSession after Close must not start workers
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	started := b.queue != nil
	if started {
		close(b.queue)
	}
	b.mu.Unlock()
	if started {
		b.wg.Wait()
	}
}

// errNoReplies is not expected: redigo returns one reply per command.
var errNoReplies = errors.New("dao: redis: pipeline returned fewer replies than commands")
