package dao

import (
	"context"
)

// Concurrent AddSession calls are coalesced: their commands go into a
// shared pipeline, so N sessions cost one write and one read system call
// on each side instead of N. Single calls are the session writes that
// arrive unbatched: a comet's lone handshake (it sends the handshakes that
// queue meanwhile as one ConnectBatch, which AddSessions writes as one
// pipeline without coming here), and every handshake of a comet that sends
// one Connect per connection (an older comet). A call never waits for
// others to gather: a worker takes whatever is queued when it becomes
// free (internal/gather), so a lone call is sent at once, and with
// addWorkers pipelines in flight the queue forms only under load.
const (
	addWorkers  = 2   // pipelines in flight at once: one slow pipeline does not stall every AddSession
	addMaxBatch = 128 // sessions per pipeline at most
	addQueue    = 1024
)

// addReq is one queued AddSession.
type addReq struct {
	s    Session
	done chan error // buffered: the worker never blocks on it
}

// coalesceAdd writes s in a pipeline shared with the concurrent
// AddSession calls. It waits for room in the queue and then for the
// pipeline, each only until ctx ends; a write given up on still completes
// (it is idempotent).
func (r *Redis) coalesceAdd(ctx context.Context, s Session) error {
	r.addsStart.Do(func() { r.adds.Start(addWorkers) })
	req := &addReq{s: s, done: make(chan error, 1)}
	if err := r.adds.PutContext(ctx, req); err != nil {
		return err
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeAdds is a worker's turn: the sessions it gathered in one pipeline,
// bounded by read_timeout (not by one caller's context: the pipeline is
// shared), each request told its own result.
func (r *Redis) writeAdds(batch []*addReq) {
	ctx, cancel := context.WithTimeout(context.Background(), r.readTimeout)
	defer cancel()
	sessions := make([]Session, len(batch))
	for i, q := range batch {
		sessions[i] = q.s
	}
	results, err := r.writeSessions(ctx, sessions)
	for i, q := range batch {
		if err != nil {
			q.done <- err
		} else {
			q.done <- results[i]
		}
	}
}

// closeAdds stops the workers after the queued sessions were written (or
// failed: the pool may be closed already). An AddSession after it writes
// on its own goroutine, and fails with ErrClosed.
func (r *Redis) closeAdds() {
	r.addsStart.Do(func() {}) // an AddSession after Close must not start workers
	r.adds.Stop(context.Background())
}
