package comet

import (
	"net"
	"sync"
	"time"
)

// writer is a Channel's output: the bounded queue of frames waiting for
// the socket, the batch being written, the inline write's state, the
// writer role and the close. One lock (mu) guards it.
//
// The writer role: at most one goroutine writes to the socket at a time,
// and only while there is something to write, so an idle connection holds
// no writer goroutine and no buffer. The role is held by
//   - a pusher that finds the channel idle: it writes the frame itself with
//     one non-blocking system call (push, writeInline; writeNow in
//     poll_linux.go), plain TCP and WebSocket only;
//   - a write loop goroutine, started when frames queue behind a writer
//     (startWriteLoop), which drains the queue with writev (writeLoop) and
//     ends when the queue is empty;
//   - the reader during the handshake, so the auth reply is the first frame
//     a client sees (claimWriter, releaseWriter).
//
// Whoever holds the role when it is given up (keepWriting) and finds the
// channel closed writes the close frame, if any, and closes the socket.
//
// A room worker's io_uring batch (ringBatch, uring_fanout.go) holds the
// role too: it claims it for each member like an inline pusher
// (claim with ring set), sends to the socket by its number (fd) with no
// reference on Go's descriptor, and gives it up after the batch's
// completions are reaped (finishRing). The socket number must not be
// closed, and reused for another connection, in between, or the frame
// would reach that connection. Hence the invariant: while ring is set,
// nothing closes the socket. closeWith then only shuts the socket down
// (through Go's descriptor, which wakes the reader; the reader's cleanup
// closes through closeWith too), or, with a close frame to write, leaves
// it all to the holder; the holder, once it has cleared ring, finds the
// channel closed when it gives the role up and closes the socket
// (keepWriting, writeFinal). Every close of a published channel's socket
// goes through closeWith or keepWriting: writeFinal is the only call of
// c.raw.Close after the handshake (admit closes before the channel
// exists for anyone else). The ring batch being the writer, nothing else
// writes to the socket meanwhile, so the order of frames is kept as for
// an inline write.
//
// Channel holds the writer by value (no pointer: a connection pays no
// extra word for it), and its methods are Channel methods: writing uses
// the channel's socket, its server's limits, metrics and goroutine
// accounting, and closing also stops the channel's timer.
type writer struct {
	// The inline write (plain TCP and WebSocket only, never SSE): tryFn
	// is writeNow bound once, so a push allocates nothing, nil where
	// inline writes are not possible; tryBuf, tryN and tryErr
	// are its argument and results and belong to whoever holds the
	// writer role.
	tryFn  func(fd uintptr) bool
	tryBuf []byte
	tryN   int
	tryErr error

	mu       sync.Mutex // guards the fields below
	queue    net.Buffers
	inflight net.Buffers // the batch being written; its array is reused as the next queue
	qbytes   int
	writing  bool        // someone holds the writer role: a write loop, a pusher writing inline, a ring batch or the handshake
	closed   bool        // no more pushes; the socket is closed or about to be
	reason   CloseReason // why it closed, the first reason given
	ring     bool        // the role is held by a ring batch: no one else may close the socket
	// fd is the socket's number where inline writes are possible (rc
	// set), else -1; set by newChannel, read-only afterwards. It is
	// valid while the socket is open, and a ring batch uses it only
	// while it holds the role with ring set.
	fd    int32
	final []byte // written by the running writer before it closes the socket
}

// finalWriteTimeout bounds the write of a close frame.
const finalWriteTimeout = time.Second

// pushResult is what happened to one frame pushed to a channel.
type pushResult uint8

const (
	pushQueued  pushResult = iota
	pushDropped            // queue full
	pushClosed             // the channel is closing
	pushInline             // (claim only) the caller holds the writer role and writes the frame itself
)

// push hands b, bytes already framed for this channel's transport and
// shared with other channels (never modified), to the writer. It never
// blocks: a full queue drops the frame or closes the channel, following
// protocol.slow_policy. When nothing is queued or being written on a plain
// TCP or WebSocket connection, the pusher writes b itself (writeInline);
// otherwise b is queued and a write loop started if none runs.
func (c *Channel) push(b []byte) pushResult {
	if r := c.claim(b, false); r != pushInline {
		return r
	}
	return c.writeInline(b)
}

// claim is push up to the write: it drops b (queue full), refuses it
// (closed) or queues it, or, when the connection is idle and can be
// written inline, gives the caller the writer role to write b itself
// (pushInline): then the caller writes it and calls finishInline, or with
// ring (a ring batch, which sends by fd) finishRing.
func (c *Channel) claim(b []byte, ring bool) pushResult {
	c.out.mu.Lock()
	if c.out.closed {
		c.out.mu.Unlock()
		return pushClosed
	}
	p := &c.srv.cfg.Protocol
	if len(c.out.queue) >= p.QueueFrames || c.out.qbytes+len(b) > p.QueueBytes {
		c.out.mu.Unlock()
		c.srv.metrics.dropped(c.tr)
		if p.SlowPolicy == SlowClose {
			c.close(ReasonSlow)
		}
		return pushDropped
	}
	if !c.out.writing && c.out.tryFn != nil {
		c.out.writing = true // the caller is the writer for one write
		c.out.ring = ring
		c.out.mu.Unlock()
		return pushInline
	}
	c.out.queue = append(c.out.queue, b)
	c.out.qbytes += len(b)
	start := !c.out.writing
	c.out.writing = true
	c.out.mu.Unlock()
	if start {
		c.startWriteLoop()
	}
	return pushQueued
}

// pushReply queues a reply to the client's own request. Replies are never
// dropped: a client whose replies cannot be queued is not reading, and is
// closed as a slow consumer whatever the slow policy.
func (c *Channel) pushReply(b []byte) {
	c.out.mu.Lock()
	full := len(c.out.queue) >= c.srv.cfg.Protocol.QueueFrames || c.out.qbytes+len(b) > c.srv.cfg.Protocol.QueueBytes
	c.out.mu.Unlock()
	if full {
		c.close(ReasonSlow)
		return
	}
	c.push(b)
}

// writeInline writes b with one non-blocking system call; the caller holds
// the writer role. What the socket does not take goes first in the queue,
// for a write loop that may wait.
func (c *Channel) writeInline(b []byte) pushResult {
	c.out.tryBuf, c.out.tryN, c.out.tryErr = b, 0, nil
	err := c.rc.Write(c.out.tryFn)
	n := c.out.tryN
	if err == nil {
		err = c.out.tryErr
	}
	c.out.tryBuf = nil
	return c.finishInline(b, n, err)
}

// finishRing is finishInline for a ring batch that sent n bytes of b
// (err: the send failed): the batch is done with the socket, which may be
// closed again from here on.
func (c *Channel) finishRing(b []byte, n int, err error) pushResult {
	c.out.mu.Lock()
	c.out.ring = false
	c.out.mu.Unlock()
	return c.finishInline(b, n, err)
}

// finishInline completes an inline write of b that wrote n bytes (err:
// it failed): a failed write closes the channel; what the socket did not
// take goes first in the queue, for a write loop that may wait; else the
// role is given up, or passes to a write loop for what queued meanwhile.
func (c *Channel) finishInline(b []byte, n int, err error) pushResult {
	if err != nil {
		c.close(ReasonWriteError)
		c.keepWriting()
		return pushClosed
	}
	if n < len(b) {
		c.out.mu.Lock()
		c.out.queue = append(c.out.queue, nil)
		copy(c.out.queue[1:], c.out.queue)
		c.out.queue[0] = b[n:]
		c.out.qbytes += len(b) - n
		c.out.mu.Unlock()
		c.startWriteLoop()
	} else if c.keepWriting() {
		c.startWriteLoop() // pushes queued while we wrote
	}
	if n > 0 {
		c.srv.metrics.bytesOut.Add(float64(n))
	}
	return pushQueued
}

// claimWriter takes the writer role for the handshake's reader, which
// writes the auth reply itself: pushes arriving meanwhile queue behind the
// reply. It is called before the channel is published, so no push to it
// competes for the role.
func (c *Channel) claimWriter() {
	c.out.mu.Lock()
	c.out.writing = true
	c.out.mu.Unlock()
}

// writeOwn writes b from the reader's goroutine, blocking up to
// protocol.write_timeout, while the reader owns the socket: before the
// channel is authenticated (a pong), or holding the writer role (the auth
// reply). The deadline is cleared after: pushers' non-blocking writes
// honour it and would fail once it passed.
func (c *Channel) writeOwn(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.cfg.Protocol.WriteTimeout.D()))
	_, err := c.conn.Write(b)
	_ = c.conn.SetWriteDeadline(time.Time{})
	return err
}

// releaseWriter is called by the holder of the writer role when it is done
// writing: the role passes to a new write loop when frames queued
// meanwhile, else it is given up (keepWriting).
func (c *Channel) releaseWriter() {
	if c.keepWriting() {
		c.startWriteLoop()
	}
}

// keepWriting is called by the writer when it is done with what it took:
// it reports whether more is queued (the caller keeps the writer role), or
// gives the role up, writing the close frame first when the channel closed.
func (c *Channel) keepWriting() bool {
	c.out.mu.Lock()
	if !c.out.closed && len(c.out.queue) > 0 {
		c.out.mu.Unlock()
		return true
	}
	c.out.writing = false
	final, closed := c.out.final, c.out.closed
	if closed {
		c.out.queue, c.out.inflight, c.out.final = nil, nil, nil
	}
	c.out.mu.Unlock()
	if closed {
		c.writeFinal(final)
	}
	return false
}

// startWriteLoop starts a write loop goroutine for the caller's writer
// role. Once shutdown has begun it starts none: the channel closes and
// the role is given up. The loop counts among the server's goroutines
// (Server.wg): added here, done when writeLoop returns. The go statement
// rather than wg.Go: a method value costs one more allocation per start.
func (c *Channel) startWriteLoop() {
	s := c.srv
	s.mu.RLock()
	started := s.ctx.Err() == nil
	if started {
		s.wg.Add(1)
		go c.writeLoop()
	}
	s.mu.RUnlock()
	if !started {
		c.close(ReasonShutdown)
		c.keepWriting()
	}
}

// writeLoop writes queued frames until the queue is empty, many frames per
// system call (writev), each batch under the write deadline. The queue's
// array and the batch in flight are kept between runs.
func (c *Channel) writeLoop() {
	defer c.srv.wg.Done() // added by startWriteLoop
	for c.keepWriting() {
		c.out.mu.Lock()
		// Swap the queue with the (empty) array of the previous batch.
		c.out.inflight, c.out.queue = c.out.queue, c.out.inflight[:0]
		n := c.out.qbytes
		c.out.qbytes = 0
		c.out.mu.Unlock()

		_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.cfg.Protocol.WriteTimeout.D()))
		batch := c.out.inflight
		c.srv.metrics.writeBatch.Observe(float64(len(batch)))
		var err error
		if c.tr == transportSSE {
			n, err = c.writeSSE(batch) // events made of the frames
		} else {
			_, err = c.out.inflight.WriteTo(c.conn) // consumes c.out.inflight
		}
		// No deadline may outlive the write: writeInline's non-blocking
		// writes honour it and would fail once it passed.
		_ = c.conn.SetWriteDeadline(time.Time{})
		clear(batch) // drop references to shared frames
		c.out.mu.Lock()
		c.out.inflight = batch[:0]
		if cap(batch) > 2*c.srv.cfg.Protocol.QueueFrames {
			c.out.inflight = nil // do not keep a burst's array forever
		}
		c.out.mu.Unlock()
		if err != nil {
			c.close(ReasonWriteError)
			continue
		}
		c.srv.metrics.bytesOut.Add(float64(n))
	}
}

// close ends the connection for reason; the first reason wins. It never
// blocks: it closes the TCP socket (shuts it down while a ring batch
// holds the writer role, see writer), which makes the reader and any
// writer return; the reader then cleans up.
func (c *Channel) close(reason CloseReason) { c.closeWith(nil, reason) }

// closeWith is close that first writes final (a WebSocket close frame) when
// it can do so without blocking the caller for long: by the running writer
// after its current batch, else here under the write deadline. No push is
// accepted once it has been called.
func (c *Channel) closeWith(final []byte, reason CloseReason) {
	c.out.mu.Lock()
	if c.out.closed {
		c.out.mu.Unlock()
		return
	}
	c.out.closed = true
	c.out.reason = reason
	writerRunning, ring := c.out.writing, c.out.ring
	if writerRunning {
		c.out.final = final
	}
	c.out.mu.Unlock()
	c.srv.wheel.Del(&c.timer)
	switch {
	case writerRunning && final != nil:
		return // the writer writes final and closes the socket
	case ring:
		// A ring batch sends to the socket by its number: it closes the
		// socket when it gives the role up (see writer). Shutting it
		// down wakes the reader now.
		shutdownSocket(c.rc)
		return
	}
	c.writeFinal(final)
}

// writeFinal writes b, if any, and closes the socket. Only the goroutine
// that is the channel's writer at that moment calls it, or closeWith when
// no ring batch holds the role.
func (c *Channel) writeFinal(b []byte) {
	if b != nil {
		_ = c.conn.SetWriteDeadline(time.Now().Add(finalWriteTimeout))
		_, _ = c.conn.Write(b)
	}
	_ = c.raw.Close()
}

// closeReason returns why the channel closed (reasonNone while it is open).
func (c *Channel) closeReason() CloseReason {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return c.out.reason
}
