package comet

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultSession is the session timeout used when logic's Connect reply
// carries none.
const defaultSession = 90 * time.Second

// serveConn runs one connection from accept to cleanup, on its own
// goroutine: the handshake (TLS, WebSocket upgrade, auth) under one
// timeout, then the read loop until the connection ends; cleanup runs
// after either.
func (s *Server) serveConn(raw net.Conn, tr transport) {
	c := newChannel(s, raw, tr, remoteIP(raw))
	if !s.admit(c) {
		return
	}
	authed, err := c.handshake()
	if err != nil || !authed {
		c.cleanup(authed, err)
		return
	}
	c.startReadLoop() // it cleans up when the loop ends
}

// admit counts c against limits.max_conns and limits.max_conns_per_ip and
// closes it at once when it is one too many; cleanup gives back what it
// counted.
func (s *Server) admit(c *Channel) bool {
	if !s.limits.admit(c.ip) {
		_ = c.raw.Close()
		s.metrics.closed(ReasonTooManyConn)
		return false
	}
	s.metrics.connsBy[c.tr].Inc()
	return true
}

// closeError carries the reason a handshake or read loop ended.
type closeError struct {
	reason CloseReason
	err    error
}

func (e *closeError) Error() string { return e.reason.String() + ": " + e.err.Error() }
func (e *closeError) Unwrap() error { return e.err }

func fail(reason CloseReason, err error) error { return &closeError{reason: reason, err: err} }

// handshake runs TLS, the WebSocket upgrade (or the SSE request) and auth
// under the handshake timeout, listed among the limits' pending handshakes
// meanwhile so that Shutdown closes it.
// authed reports whether the channel was published (and so needs the full
// cleanup).
func (c *Channel) handshake() (authed bool, err error) {
	s := c.srv
	s.limits.startHandshake(c)
	s.wheel.Add(&c.timer, s.cfg.Protocol.HandshakeTimeout.D(), c)
	var p protocol.Proto
	reply, err := c.authenticate(&p)
	if err != nil && c.tr == transportSSE {
		c.sseRefuse(err) // an HTTP error status, unless already closed
	}
	if err == nil {
		authed, err = c.publish(&p, reply)
	}
	s.limits.endHandshake(c)
	return authed, err
}

// authenticate sets the transport up (TLS, WebSocket upgrade or SSE
// request), reads the auth frame into p (an SSE request's query makes it)
// and has logic check it.
func (c *Channel) authenticate(p *protocol.Proto) (*logicpb.ConnectReply, error) {
	s := c.srv
	if c.tr == transportTLS || c.tr == transportWSS {
		tc := tls.Server(c.raw, s.ln.tls)
		if err := tc.Handshake(); err != nil {
			return nil, fail(ReasonBadFrame, fmt.Errorf("tls handshake: %w", err))
		}
		c.conn = tc
	}
	var cookie string // the upgrade's Cookie header, for logic
	if c.tr.ws() {
		// A GET of sse.path turns the channel into an SSE stream whose
		// query is the auth body (p); anything else is a WebSocket
		// upgrade.
		var err error
		if cookie, err = c.routeHTTP(p); err != nil {
			return nil, err
		}
	}
	for c.tr != transportSSE {
		if err := c.readFrame(p); err != nil {
			return nil, readFail(err)
		}
		if p.Op == protocol.OpAuth {
			break
		}
		// goim v2 ignores frames before auth; so do we.
	}
	if !s.limits.startAuth(c.ip) {
		s.metrics.authFailed(ReasonAuthRate)
		return nil, fail(ReasonAuthRate, errors.New("auth rate or pending handshakes per IP exceeded"))
	}
	// The body goes to logic unparsed: logic parses it anyway, and a
	// second parse here was a large share of the comet's CPU in a connect
	// burst (docs/benchmark.md). Logic answers a body that is not the auth
	// JSON InvalidArgument.
	reply, err := s.logic.connect(&logicpb.ConnectReq{Server: s.cfg.Host, Cookie: cookie, Token: bytes.Clone(p.Body), ConnId: c.connID})
	s.limits.endAuth(c.ip)
	if err != nil {
		reason := ReasonLogicError
		switch status.Code(err) {
		case codes.InvalidArgument:
			reason = ReasonBadAuth
		case codes.Unauthenticated, codes.PermissionDenied, codes.NotFound:
			reason = ReasonAuthRejected
		}
		s.metrics.authFailed(reason)
		return nil, fail(reason, err)
	}
	if reply.GetKey() == "" {
		s.metrics.authFailed(ReasonLogicError)
		return nil, fail(ReasonLogicError, errors.New("logic returned no key"))
	}
	return reply, nil
}

// publish makes the channel logic accepted reachable: it joins its room
// and its bucket, then the auth reply (op 8, answering p) goes out and the
// session timeout replaces the handshake's. authed reports whether the
// channel was published.
func (c *Channel) publish(p *protocol.Proto, reply *logicpb.ConnectReply) (authed bool, err error) {
	s := c.srv
	c.key, c.mid = reply.GetKey(), reply.GetMid()
	c.log = nil // rebuild with key and mid
	c.grant = newRoomGrant(reply.GetRoomsLimited(), reply.GetRooms())
	c.session = time.Duration(reply.GetHeartbeat())
	if c.session <= 0 {
		c.session = defaultSession
	}
	room := reply.GetRoomID()
	if room != "" {
		// Logic checks the room against the token; one outside the
		// connection's own rooms is a bug there, refused all the same.
		if reason, err := c.roomRefusal(room); err != nil {
			return false, c.refuseAuthed(reason, fmt.Errorf("logic answered a room the connection may not join: %w", err))
		}
	}

	if reply.GetReliable() && c.tr != transportSSE {
		c.rel = newReliable(reply) // before any push can reach the channel
	}
	// The channel joins its bucket and room before the auth reply goes
	// out, so a client that has seen the reply misses no push sent after
	// it. The reader holds the writer role meanwhile: pushes arriving in
	// between queue behind the reply, which stays the first frame the
	// client sees.
	c.claimWriter()
	if room != "" {
		if c.room = s.rooms.join(room, c, s.cfg.Limits.MaxRooms); c.room == nil {
			err := c.refuseAuthed(ReasonTooManyRooms, fmt.Errorf("limits.max_rooms (%d) reached", s.cfg.Limits.MaxRooms))
			c.releaseWriter() // writes the close frame
			return false, err
		}
	}
	c.setWatch(reply.GetAccepts(), true)
	if c.tr == transportSSE {
		// The comet heartbeats the stream. Armed before authed is set,
		// so the handshake timeout cannot fire as a heartbeat meanwhile.
		c.renewed(time.Since(s.born), s.logic.generation())
		c.armSSEHeartbeat()
	}
	c.authed.Store(true)
	if old := s.bucket(c.key).put(c); old != nil {
		old.close(ReasonReplaced)
	}
	// Empty unless logic's auth.reply_key puts the key in it.
	var first []byte
	if c.tr == transportSSE {
		first = c.sseHello(reply.GetAuthReply())
	} else {
		ack := protocol.Proto{Ver: p.Ver, Op: protocol.OpAuthReply, Seq: p.Seq, Body: reply.GetAuthReply()}
		first = c.encodeReply(&ack)
	}
	if werr := c.writeOwn(first); werr != nil {
		c.close(ReasonWriteError)
		c.releaseWriter()
		return true, fail(ReasonWriteError, werr)
	}
	c.releaseWriter() // a write loop for pushes that arrived while the reply was written
	s.metrics.authOK.Inc()
	if c.rel != nil {
		c.startReliable() // op 20 and the recovered messages, from a fetch worker
	}

	if c.tr != transportSSE {
		s.wheel.Reset(&c.timer, c.session)
		c.renewed(time.Since(s.born), s.logic.generation())
	}
	return true, nil
}

// refuseAuthed closes a connection logic has accepted but the comet
// refuses (a room rule), before it is published: logic's session is
// removed with a Disconnect (the connection's own, by its conn id).
func (c *Channel) refuseAuthed(reason CloseReason, err error) error {
	c.closePolicy(reason)
	c.srv.logic.queueDisconnect(c.mid, c.key, c.connID)
	c.srv.metrics.authFailed(reason)
	return fail(reason, err)
}

// serve reads and answers frames until the connection ends.
func (c *Channel) serve() error {
	if c.tr == transportSSE {
		return c.serveSSE()
	}
	var p protocol.Proto
	for handled := false; ; handled = true {
		if handled && c.waitsNext() {
			return errFreshStack // the loop goes on on a fresh goroutine (stack.go)
		}
		if err := c.fill(); err != nil {
			return readFail(err)
		}
		if err := c.readFrame(&p); err != nil {
			return readFail(err)
		}
		c.srv.metrics.bytesIn.Add(float64(protocol.HeaderSize + len(p.Body)))
		if err := c.countFrame(); err != nil {
			return err
		}
		if err := c.handle(&p); err != nil {
			return err
		}
	}
}

// readFail classifies a read error.
func readFail(err error) error {
	var ce *closeError
	switch {
	case errors.As(err, &ce):
		return err
	case isFrameError(err):
		return fail(ReasonBadFrame, err)
	default:
		return fail(ReasonClientClosed, err)
	}
}

func isFrameError(err error) bool {
	for _, e := range []error{protocol.ErrShortHeader, protocol.ErrHeaderLen, protocol.ErrPackLen,
		protocol.ErrBodyTooLarge, protocol.ErrTruncated, protocol.ErrTrailing} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// cleanup ends the channel: it unpublishes it, leaves its room, tells logic,
// counts the close by its reason (the first reason recorded wins, so a
// timeout or an eviction is not reported as the read error it caused) and
// gives back what admit counted.
func (c *Channel) cleanup(authed bool, err error) {
	reason := ReasonClientClosed
	var ce *closeError
	if errors.As(err, &ce) {
		reason = ce.reason
	}
	c.close(reason)
	reason = c.closeReason()
	c.releaseReader()
	s := c.srv
	if authed {
		s.bucket(c.key).del(c)
		if c.room != nil {
			s.rooms.leave(c.room, c)
			c.room = nil
		}
		s.logic.queueDisconnect(c.mid, c.key, c.connID)
		if c.rel != nil && c.rel.counted {
			s.metrics.reliable.Dec()
		}
	}
	s.metrics.closed(reason)
	if s.log.Enabled(context.Background(), slog.LevelDebug) { // c.logger() builds a logger: only when it is used
		c.logger().Debug("connection closed", "reason", reason.String(), "err", err)
	}
	s.metrics.connsBy[c.tr].Dec()
	s.limits.release(c.ip)
}
