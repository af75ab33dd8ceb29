package comet

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goim/goim/internal/timer"
)

// Channel is one client connection. Its reader goroutine owns it: it
// authenticates, reads and answers frames, and cleans up when the connection
// ends. Its output is its writer (out, writer.go): one writer at a time, a
// pusher writing inline to an idle socket or a write loop draining the
// bounded queue, which runs only while there is something to write. An idle
// connection so costs one parked goroutine and no buffers.
type Channel struct {
	srv  *Server
	conn net.Conn // what frames are read from and written to (a *tls.Conn over TLS)
	raw  net.Conn // the TCP connection underneath; closing it aborts any I/O at once
	tr   transport
	// sseBase64 (SSE only) sends every body base64 (the request's
	// encoding=base64); set in the handshake, read-only afterwards.
	// Placed in tr's padding.
	sseBase64 bool
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
	session time.Duration // session timeout from logic, re-armed by heartbeats
	grant   roomGrant     // the rooms the connection may join
	// rel is the reliable delivery state (reliable.go) of a connection
	// that opted in; nil on every other one.
	rel *reliable

	watch    atomic.Pointer[[]int32] // ops this connection receives (sorted); replaced whole
	timer    timer.Entry             // handshake, then session timeout
	authed   atomic.Bool             // set when the channel is published; read by Expire
	frameSec uint32

	// Owned by the reader goroutine.
	room      *Room
	r         *bufio.Reader // borrowed from srv.readers while a frame is being read
	wsMsg     []byte        // a fragmented WebSocket message being assembled; SSE: the CORS header lines until the response is written
	nextRenew time.Duration // when the session is due for renewal, since the server started (Server.born)
	renewGen  uint64        // logicLink.generation() when the session was last registered
	log       *slog.Logger

	// rc is the raw socket of a plain TCP or WebSocket connection (nil
	// over TLS): the reader waits on it for data without holding a buffer
	// (waitReadable), the writer writes to it inline (writeInline).
	rc  syscall.RawConn
	out writer // the output: queue, inline write, write loop, writer role, close
}

func newChannel(s *Server, raw net.Conn, tr transport, ip netip.Addr) *Channel {
	c := &Channel{srv: s, conn: raw, raw: raw, tr: tr, ip: ip, connID: s.connIDs.Add(1)}
	if c.connID == 0 { // 0 means "no conn id" to logic
		c.connID = s.connIDs.Add(1)
	}
	c.out.fd = -1
	if tr == transportTCP || tr == transportWS {
		if c.rc = rawConn(raw); c.rc != nil {
			c.out.tryFn = c.out.writeNow
			c.out.fd = socketFD(c.rc)
		}
	}
	return c
}

// Expire is called by the timer wheel when the handshake or session timeout
// passes.
func (c *Channel) Expire() {
	if c.authed.Load() {
		if c.tr == transportSSE {
			c.sseHeartbeat() // the server heartbeats an SSE stream
			return
		}
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
