package comet

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goim/goim/internal/timer"
)

// Channel is one client connection. Its reader goroutine owns it: it
// authenticates, reads and answers frames, and cleans up when the connection
// ends. One writer at a time (the writer role): a pusher writing inline to an
// idle socket, or a writer goroutine draining the bounded queue, which runs
// only while there is something to write. An idle connection so costs one
// parked goroutine and no buffers.
type Channel struct {
	srv  *Server
	conn net.Conn // what frames are read from and written to (a *tls.Conn over TLS)
	raw  net.Conn // the TCP connection underneath; closing it aborts any I/O at once
	tr   transport
	// frameN counts the client frames in second frameSec (since the
	// server started) against limits.frames_per_second. Owned by the
	// reader goroutine; placed in padding (frameSec next to authed).
	frameN uint32
	ip     netip.Addr // client IP (IPv6: its /64), counted against the per-IP limits
	// connID tells this connection from every other of this comet's
	// process, also one with the same key: logic removes or renews a
	// session only when its conn id matches.
	connID uint64

	// Set by the reader during the handshake, before the channel is
	// published in a bucket; read-only afterwards.
	key     string
	mid     int64
	cookie  string        // the WebSocket upgrade's Cookie header, for logic
	session time.Duration // session timeout from logic, re-armed by heartbeats
	grant   roomGrant     // the rooms the connection may join

	watch    atomic.Pointer[[]int32] // ops this connection receives (sorted); replaced whole
	timer    timer.Entry             // handshake, then session timeout
	authed   atomic.Bool             // set when the channel is published; read by Expire
	frameSec uint32

	// Owned by the reader goroutine.
	room      *Room
	r         *bufio.Reader // borrowed from srv.readers while a frame is being read
	wsMsg     []byte        // a fragmented WebSocket message being assembled
	nextRenew time.Duration // when the session is due for renewal, since the server started (Server.born)
	renewGen  uint64        // logicLink.generation() when the session was last registered
	log       *slog.Logger

	// Plain TCP and WebSocket only (nil over TLS): the raw socket and the
	// bound write function a pusher uses for its one non-blocking write.
	// tryBuf, tryN and tryErr belong to whoever holds the writer role.
	rc     syscall.RawConn
	tryFn  func(fd uintptr) bool
	tryBuf []byte
	tryN   int
	tryErr error

	mu       sync.Mutex // guards the fields below
	queue    net.Buffers
	inflight net.Buffers // the batch being written; its array is reused as the next queue
	qbytes   int
	writing  bool        // someone holds the writer role: a writer goroutine or a pusher writing inline
	closed   bool        // no more pushes; the socket is closed or about to be
	reason   CloseReason // why it closed, the first reason given
	final    []byte      // written by the running writer before it closes the socket
}

// finalWriteTimeout bounds the write of a close frame.
const finalWriteTimeout = time.Second

func newChannel(s *Server, raw net.Conn, tr transport, ip netip.Addr) *Channel {
	c := &Channel{srv: s, conn: raw, raw: raw, tr: tr, ip: ip, connID: s.connIDs.Add(1)}
	if c.connID == 0 { // 0 means "no conn id" to logic
		c.connID = s.connIDs.Add(1)
	}
	if tr == transportTCP || tr == transportWS {
		if c.rc = rawConn(raw); c.rc != nil {
			c.tryFn = c.writeNow
		}
	}
	return c
}

// pushResult is what happened to one frame pushed to a channel.
type pushResult uint8

const (
	pushQueued  pushResult = iota
	pushDropped            // queue full
	pushClosed             // the channel is closing
)

// push queues b, bytes already framed for this channel's transport and
// shared with other channels (never modified), and makes sure a writer runs.
// It never blocks: a full queue drops the frame or closes the channel,
// following protocol.slow_policy. When nothing is queued or being written
// on a plain TCP or WebSocket connection, the pusher writes b itself with
// one non-blocking system call; only what the socket does not take goes to
// the queue and a writer goroutine.
func (c *Channel) push(b []byte) pushResult {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return pushClosed
	}
	p := &c.srv.cfg.Protocol
	if len(c.queue) >= p.QueueFrames || c.qbytes+len(b) > p.QueueBytes {
		c.mu.Unlock()
		c.srv.metrics.dropped(c.tr)
		if p.SlowPolicy == SlowClose {
			c.close(ReasonSlow)
		}
		return pushDropped
	}
	if !c.writing && c.rc != nil {
		c.writing = true // the pusher is the writer for one write
		c.mu.Unlock()
		return c.pushInline(b)
	}
	c.queue = append(c.queue, b)
	c.qbytes += len(b)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		c.startWriter()
	}
	return pushQueued
}

// pushInline writes b without blocking; the caller holds the writer role.
func (c *Channel) pushInline(b []byte) pushResult {
	c.tryBuf, c.tryN, c.tryErr = b, 0, nil
	err := c.rc.Write(c.tryFn)
	n := c.tryN
	if err == nil {
		err = c.tryErr
	}
	c.tryBuf = nil
	if err != nil {
		c.close(ReasonWriteError)
		c.keepWriting()
		return pushClosed
	}
	if n < len(b) {
		// The socket is full: the rest goes first in the queue, for a
		// writer goroutine that may wait.
		c.mu.Lock()
		c.queue = append(c.queue, nil)
		copy(c.queue[1:], c.queue)
		c.queue[0] = b[n:]
		c.qbytes += len(b) - n
		c.mu.Unlock()
		c.startWriter()
	} else if c.keepWriting() {
		c.startWriter() // pushes queued while we wrote
	}
	if n > 0 {
		c.srv.metrics.bytesOut.Add(float64(n))
	}
	return pushQueued
}

// startWriter starts a writer goroutine for the caller's writer role.
func (c *Channel) startWriter() {
	if !c.srv.goWriter(c) {
		c.close(ReasonShutdown)
		c.keepWriting()
	}
}

// keepWriting is called by the writer when it is done with what it took:
// it reports whether more is queued (the caller keeps the writer role), or
// gives the role up, writing the close frame first when the channel closed.
func (c *Channel) keepWriting() bool {
	c.mu.Lock()
	if !c.closed && len(c.queue) > 0 {
		c.mu.Unlock()
		return true
	}
	c.writing = false
	final, closed := c.final, c.closed
	if closed {
		c.queue, c.inflight, c.final = nil, nil, nil
	}
	c.mu.Unlock()
	if closed {
		c.writeFinal(final)
	}
	return false
}

// writeLoop writes queued frames until the queue is empty, many frames per
// system call (writev), each batch under the write deadline. The queue's
// array and the batch in flight are kept between runs.
func (c *Channel) writeLoop() {
	defer c.srv.wg.Done()
	for c.keepWriting() {
		c.mu.Lock()
		// Swap the queue with the (empty) array of the previous batch.
		c.inflight, c.queue = c.queue, c.inflight[:0]
		n := c.qbytes
		c.qbytes = 0
		c.mu.Unlock()

		_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.cfg.Protocol.WriteTimeout.D()))
		batch := c.inflight
		c.srv.metrics.writeBatch.Observe(float64(len(batch)))
		_, err := c.inflight.WriteTo(c.conn)     // consumes c.inflight
		_ = c.conn.SetWriteDeadline(time.Time{}) // see pushInline: no deadline may outlive the write
		clear(batch)                             // drop references to shared frames
		c.mu.Lock()
		c.inflight = batch[:0]
		if cap(batch) > 2*c.srv.cfg.Protocol.QueueFrames {
			c.inflight = nil // do not keep a burst's array forever
		}
		c.mu.Unlock()
		if err != nil {
			c.close(ReasonWriteError)
			continue
		}
		c.srv.metrics.bytesOut.Add(float64(n))
	}
}

// pushReply queues a reply to the client's own request. Replies are never
// dropped: a client whose replies cannot be queued is not reading, and is
// closed as a slow consumer whatever the slow policy.
func (c *Channel) pushReply(b []byte) {
	c.mu.Lock()
	full := len(c.queue) >= c.srv.cfg.Protocol.QueueFrames || c.qbytes+len(b) > c.srv.cfg.Protocol.QueueBytes
	c.mu.Unlock()
	if full {
		c.close(ReasonSlow)
		return
	}
	c.push(b)
}

// close ends the connection for reason; the first reason wins. It never
// blocks: it closes the TCP socket, which makes the reader and any writer
// return; the reader then cleans up.
func (c *Channel) close(reason CloseReason) { c.closeWith(nil, reason) }

// closeWith is close that first writes final (a WebSocket close frame) when
// it can do so without blocking the caller for long: by the running writer
// after its current batch, else here under the write deadline. No push is
// accepted once it has been called.
func (c *Channel) closeWith(final []byte, reason CloseReason) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.reason = reason
	writerRunning := c.writing
	if writerRunning {
		c.final = final
	}
	c.mu.Unlock()
	c.srv.wheel.Del(&c.timer)
	if writerRunning && final != nil {
		return // the writer writes final and closes the socket
	}
	c.writeFinal(final)
}

// writeFinal writes b, if any, and closes the socket. Only the goroutine
// that is the channel's writer at that moment calls it.
func (c *Channel) writeFinal(b []byte) {
	if b != nil {
		_ = c.conn.SetWriteDeadline(time.Now().Add(finalWriteTimeout))
		_, _ = c.conn.Write(b)
	}
	_ = c.raw.Close()
}

// closeReason returns why the channel closed (reasonNone while it is open).
func (c *Channel) closeReason() CloseReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Expire is called by the timer wheel when the handshake or session timeout
// passes.
func (c *Channel) Expire() {
	if c.authed.Load() {
		c.close(ReasonHeartbeat)
		return
	}
	c.close(ReasonHandshake)
}

// watches reports whether the channel receives pushes of op.
func (c *Channel) watches(op int32) bool {
	w := c.watch.Load()
	if w == nil {
		return false
	}
	_, ok := slices.BinarySearch(*w, op)
	return ok
}

// setWatch replaces the watched set (sub == true adds ops, else removes).
// Only the reader goroutine calls it, so copy-on-write needs no lock.
func (c *Channel) setWatch(ops []int32, sub bool) {
	var next []int32
	if cur := c.watch.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	for _, op := range ops {
		i, found := slices.BinarySearch(next, op)
		switch {
		case sub && !found && len(next) < maxWatched:
			next = slices.Insert(next, i, op)
		case !sub && found:
			next = slices.Delete(next, i, i+1)
		}
	}
	c.watch.Store(&next)
}

// countFrame counts one client frame against limits.frames_per_second and
// closes the connection (frame_rate) when it is one too many. Only the
// reader goroutine calls it.
func (c *Channel) countFrame() error {
	limit := c.srv.cfg.Limits.FramesPerSecond
	if limit <= 0 {
		return nil
	}
	if sec := uint32(time.Since(c.srv.born) / time.Second); sec != c.frameSec {
		c.frameSec, c.frameN = sec, 0
	}
	if c.frameN++; c.frameN > uint32(limit) {
		c.closePolicy(ReasonFrameRate)
		return fail(ReasonFrameRate, fmt.Errorf("more than %d frames in a second", limit))
	}
	return nil
}

// logger returns the connection's logger, built on first use.
func (c *Channel) logger() *slog.Logger {
	if c.log == nil {
		c.log = c.srv.log.With("remote", c.raw.RemoteAddr().String(), "transport", c.tr.String(), "key", c.key, "mid", c.mid)
	}
	return c.log
}
