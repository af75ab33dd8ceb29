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

// Concurrent KeysByMids lookups are coalesced the same way: the HGETALLs
// of the lookups queued at one moment go out as one pipeline on one
// connection, so N lookups cost one write and one read system call instead
// of N of each (and N pooled connections under load, more than the pool
// keeps idle, so that some were dialled and closed per burst). A lone
// lookup is sent at once. A lookup of more than readMaxCmds users is sent
// on its own connection, as before: it fills a pipeline by itself.
const (
	readWorkers  = 2   // pipelines in flight at once
	readMaxBatch = 128 // lookups per pipeline at most
	readMaxCmds  = 16  // lookups with more commands are not coalesced
	readQueue    = 1024
)

// readReq is one queued lookup: its commands get their replies in place.
type readReq struct {
	cmds []command
	done chan error // buffered: the worker never blocks on it
}

// coalesceRead runs cmds (read-only commands, safe to send again) in a
// pipeline shared with the concurrent lookups. It waits for room in the
// queue and then for the pipeline, each only until ctx ends; cmds must not
// be read after it returned an error.
func (r *Redis) coalesceRead(ctx context.Context, cmds []command) error {
	if len(cmds) > readMaxCmds || r.cluster != nil {
		return r.exec(ctx, cmds)
	}
	if r.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.readsStart.Do(func() { r.reads.Start(readWorkers) })
	req := &readReq{cmds: cmds, done: make(chan error, 1)}
	if err := r.reads.PutContext(ctx, req); err != nil {
		return err
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readCmds is a worker's turn: the lookups it gathered in one pipeline,
// bounded by read_timeout (the pipeline is shared, so no caller's context
// bounds it), each told the pipeline's result; a command's own error
// (a Redis error reply) stays with its lookup.
func (r *Redis) readCmds(batch []*readReq) {
	ctx, cancel := context.WithTimeout(context.Background(), r.readTimeout)
	defer cancel()
	cmds := batch[0].cmds
	if len(batch) > 1 {
		n := 0
		for _, q := range batch {
			n += len(q.cmds)
		}
		cmds = make([]command, 0, n)
		for _, q := range batch {
			cmds = append(cmds, q.cmds...)
		}
	}
	err := r.exec(ctx, cmds)
	if len(batch) > 1 && err == nil {
		off := 0
		for _, q := range batch {
			off += copy(q.cmds, cmds[off:off+len(q.cmds)])
		}
	}
	for _, q := range batch {
		q.done <- err
	}
}

// closeReads stops the lookup workers after the queued lookups ran (or
// failed). A lookup after it runs on its own goroutine and fails with
// ErrClosed.
func (r *Redis) closeReads() {
	r.readsStart.Do(func() {})
	r.reads.Stop(context.Background())
}
