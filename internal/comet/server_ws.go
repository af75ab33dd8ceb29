package comet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
)

// maxFragments bounds the frames one WebSocket message may be split into.
const maxFragments = 128

var (
	errWSPath   = ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("comet: unknown path"))
	errWSOrigin = ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden), ws.RejectionReason("comet: origin not allowed"))
)

// upgrade performs the WebSocket handshake on the path from config (a query
// string is allowed). A failed upgrade is answered with an HTTP error status
// (400 for a malformed request or an unknown path) by the ws library.
// Clients must wait for the 101 response before sending frames (RFC 6455).
// It returns the request's Cookie header, for logic.
//
// rw reads the request (the connection, or a reader that peeked at its
// first bytes) and writes the answer to the connection.
func (c *Channel) upgrade(rw io.ReadWriter) (cookie string, err error) {
	cfg := &c.srv.cfg.WebSocket
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			if i := bytes.IndexByte(uri, '?'); i >= 0 {
				uri = uri[:i]
			}
			if string(uri) != cfg.Path {
				return errWSPath
			}
			return nil
		},
		OnHeader: func(key, value []byte) error {
			switch {
			case bytes.EqualFold(key, []byte("Cookie")):
				cookie = string(value)
			case bytes.EqualFold(key, []byte("Origin")):
				if len(cfg.Origins) > 0 && !slices.Contains(cfg.Origins, string(value)) {
					return errWSOrigin
				}
			}
			return nil
		},
	}
	if _, err := u.Upgrade(rw); err != nil {
		return "", fail(ReasonBadFrame, fmt.Errorf("websocket upgrade: %w", err))
	}
	return cookie, nil
}

// readWSFrame reads WebSocket frames until one data message is complete
// and decodes it as one goim frame. Control frames are answered on the way:
// a ping gets a pong (through the writer), a close gets a close. Protocol
// errors close the connection with status 1002, oversized messages with
// 1009.
func (c *Channel) readWSFrame(p *protocol.Proto) error {
	limit := int64(protocol.HeaderSize + c.srv.cfg.Protocol.MaxBody)
	// The previous message has been handled: keep a small reassembly
	// buffer, drop a large one so an idle connection does not hold it.
	if cap(c.wsMsg) > 512 {
		c.wsMsg = nil
	}
	c.wsMsg = c.wsMsg[:0]
	fragments := 0
	for {
		if err := c.fill(); err != nil {
			return err
		}
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return err
			}
			return c.wsFail(ws.StatusProtocolError, err)
		}
		switch {
		case h.Rsv != 0:
			return c.wsFail(ws.StatusProtocolError, errors.New("reserved bits set"))
		case !h.Masked:
			return c.wsFail(ws.StatusProtocolError, errors.New("unmasked client frame"))
		}
		if h.OpCode.IsControl() {
			if err := c.wsControl(h); err != nil {
				return err
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && fragments == 0:
			return c.wsFail(ws.StatusProtocolError, errors.New("continuation without a message"))
		case h.OpCode != ws.OpContinuation && fragments > 0:
			return c.wsFail(ws.StatusProtocolError, errors.New("new message inside a fragmented one"))
		case h.OpCode != ws.OpContinuation && h.OpCode != ws.OpText && h.OpCode != ws.OpBinary:
			return c.wsFail(ws.StatusProtocolError, fmt.Errorf("unknown opcode %d", h.OpCode))
		case int64(len(c.wsMsg))+h.Length > limit:
			return c.wsFail(ws.StatusMessageTooBig, fmt.Errorf("%w: message over %d bytes", protocol.ErrBodyTooLarge, limit))
		}
		if fragments++; fragments > maxFragments {
			return c.wsFail(ws.StatusProtocolError, fmt.Errorf("message in more than %d fragments", maxFragments))
		}
		var payload []byte
		if h.Fin && fragments == 1 && h.Length <= int64(c.r.Size()) {
			// The common case: the whole message is in the reader's buffer.
			if payload, err = c.r.Peek(int(h.Length)); err != nil {
				return err
			}
			_, _ = c.r.Discard(len(payload))
			ws.Cipher(payload, h.Mask, 0)
		} else {
			start := len(c.wsMsg)
			c.wsMsg = slices.Grow(c.wsMsg, int(h.Length))[:start+int(h.Length)]
			if _, err := io.ReadFull(c.r, c.wsMsg[start:]); err != nil {
				return err
			}
			ws.Cipher(c.wsMsg[start:], h.Mask, 0)
			if !h.Fin {
				continue
			}
			payload = c.wsMsg
		}
		if err := p.DecodeWS(payload, c.srv.cfg.Protocol.MaxBody); err != nil {
			status := ws.StatusProtocolError
			if errors.Is(err, protocol.ErrBodyTooLarge) {
				status = ws.StatusMessageTooBig
			}
			return c.wsFail(status, err)
		}
		return nil
	}
}

// wsControl handles a ping, pong or close frame.
func (c *Channel) wsControl(h ws.Header) error {
	if !h.Fin || h.Length > 125 {
		return c.wsFail(ws.StatusProtocolError, errors.New("fragmented or oversized control frame"))
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		return err
	}
	ws.Cipher(payload, h.Mask, 0)
	if c.authed.Load() && h.OpCode != ws.OpClose {
		// Pings and pongs count as frames: a ping costs a pong.
		if err := c.countFrame(); err != nil {
			return err
		}
	}
	switch h.OpCode {
	case ws.OpPing:
		pong := ws.MustCompileFrame(ws.NewPongFrame(payload))
		if !c.authed.Load() {
			// Before auth the reader owns the socket and writes the
			// pong itself: a write loop started for it could still be
			// running when the handshake takes the writer role for the
			// auth reply.
			if err := c.writeOwn(pong); err != nil {
				return fail(ReasonWriteError, err)
			}
			return nil
		}
		c.pushReply(pong)
	case ws.OpClose:
		code, _ := ws.ParseCloseFrameData(payload)
		if code == 0 {
			code = ws.StatusNormalClosure
		}
		c.closeWith(ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))), ReasonClientClosed)
		return fail(ReasonClientClosed, io.EOF)
	}
	return nil // pongs are ignored
}

// goingAwayFrame is the close frame WebSocket clients get when the comet
// drains or stops: status 1001 (going away), so a browser sees a clean
// close to reconnect after, not 1006 (abnormal). Shared, never modified.
var goingAwayFrame = ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "comet stopping")))

// closeGoingAway ends a published connection for reason (drain or
// shutdown); a WebSocket one gets goingAwayFrame first.
func (c *Channel) closeGoingAway(reason CloseReason) {
	if c.tr.ws() {
		c.closeWith(goingAwayFrame, reason)
		return
	}
	c.close(reason)
}

// policyFrames are the close frames of the reasons a client is closed for
// breaking a rule (closePolicy): status 1008 (policy violation) with the
// reason's name. Shared, never modified.
var policyFrames = func() (f [numReasons][]byte) {
	for _, r := range []CloseReason{ReasonBadRoom, ReasonRoomDenied, ReasonTooManyRooms, ReasonFrameRate} {
		f[r] = ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusPolicyViolation, r.String())))
	}
	return f
}()

// closePolicy ends the connection for reason, a rule the client broke; a
// WebSocket one gets a close frame 1008 with the reason first.
func (c *Channel) closePolicy(reason CloseReason) {
	if c.tr == transportSSE && !c.authed.Load() {
		c.closeWith(c.sseError(reason), reason) // before the stream's response
		return
	}
	if c.tr.ws() && policyFrames[reason] != nil {
		c.closeWith(policyFrames[reason], reason)
		return
	}
	c.close(reason)
}

// wsFail closes the connection with a WebSocket close frame.
func (c *Channel) wsFail(code ws.StatusCode, err error) error {
	c.closeWith(ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))), ReasonBadFrame)
	return fail(ReasonBadFrame, err)
}
