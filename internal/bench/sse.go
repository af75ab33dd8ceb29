package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
)

// The SSE transport: a minimal Server-Sent Events reader for the comet's
// GET /sse (docs/protocol.md), as small per connection as the WebSocket
// one (the socket, one read buffer, a reused event buffer), so the memory
// of idle SSE connections can be measured like that of the others.
//
// The request carries the auth in its query (room, accepts, platform, mid
// and key, or token). The answer is HTTP/1.1 200 with Content-Type
// text/event-stream, then events: "retry: <ms>", the auth reply as the
// event "auth", then one event per push, "event: <op>" (its body as text
// "data:" lines) or "event: <op>.base64" (its body base64), and a comment
// line ":" every heartbeat period. Any other status is the comet refusing
// the connection (401 auth refused, 429 rate limited, 503 draining, ...).
//
// Phases, as for the others: dial; upgrade for the HTTP exchange (an error
// status is the kind refused_upgrade); auth for the wait for the event
// "auth". Heartbeat comments are counted as heartbeat replies.

// Bounds of what an SSE answer may hold.
const (
	sseMaxHead = 16 << 10                     // the response head
	sseMaxData = maxRecvBody/3*4 + 4          // one event's data: a base64 body of maxRecvBody
	sseMaxLine = sseMaxData + len("data: \n") // one line
)

// httpStatusError is an SSE request answered with an HTTP error status.
type httpStatusError struct {
	Status int
	Text   string // the answer's text body, cut short
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("sse: HTTP status %d: %q", e.Status, e.Text)
}

// sseTarget is the connection's SSE request target: the path and the
// auth as query parameters.
func (cn *conn) sseTarget(cfg *ConnsConfig) (string, error) {
	q := url.Values{}
	if len(cfg.HMACKey) > 0 {
		tok, err := cn.token(cfg)
		if err != nil {
			return "", err
		}
		q.Set("token", tok)
	} else {
		q.Set("mid", strconv.FormatInt(cn.mid, 10))
		if cn.key != "" {
			q.Set("key", cn.key)
		}
	}
	if cn.room != "" {
		q.Set("room", cn.room)
	}
	if len(cfg.Accepts) > 0 {
		ops := make([]string, len(cfg.Accepts))
		for i, op := range cfg.Accepts {
			ops[i] = strconv.FormatInt(int64(op), 10)
		}
		q.Set("accepts", strings.Join(ops, ","))
	}
	q.Set("platform", cfg.Platform)
	return cfg.SSEPath + "?" + q.Encode(), nil
}

// sseConn is one SSE stream. Like client.Conn it starts no goroutine:
// the caller reads with ReadFrames.
type sseConn struct {
	nc     net.Conn
	br     *bufio.Reader
	data   []byte   // the event being read; reused
	long   []byte   // a line longer than the read buffer; dropped after use
	name   [24]byte // the event's name: "auth", "<op>" or "<op>.base64"
	closed atomic.Bool
}

// dialSSE connects to the comet at addr with o.NetDial, sends the SSE
// request for target and returns once the auth event arrived, all within
// o.HandshakeTimeout and ctx. Errors are the client package's:
// *client.DialError for the dial and the HTTP exchange (an error status
// is an *httpStatusError inside it), *client.AuthError for a stream that
// ended or broke before the auth event.
func dialSSE(ctx context.Context, addr, target string, o client.DialOptions) (*sseConn, error) {
	deadline := time.Now().Add(o.HandshakeTimeout)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := o.NetDial(hctx, "tcp", addr)
	if err != nil {
		return nil, &client.DialError{Addr: addr, Err: err}
	}
	_ = nc.SetDeadline(deadline)
	// ctx ending cuts the handshake short instead of waiting out its
	// timeout.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	s := &sseConn{nc: nc, br: bufio.NewReaderSize(nc, max(o.ReadBufferSize, 64))}
	err = s.handshake(addr, target)
	if err == nil && !stop() {
		err = &client.AuthError{Addr: addr, Err: ctx.Err()}
	}
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return s, nil
}

// handshake sends the request, reads the answer's head and the events up
// to the auth event.
func (s *sseConn) handshake(addr, target string) error {
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\nCache-Control: no-store\r\n\r\n"
	if _, err := io.WriteString(s.nc, req); err != nil {
		return &client.DialError{Addr: addr, Err: fmt.Errorf("sse request: %w", err)}
	}
	if err := s.readHead(); err != nil {
		return &client.DialError{Addr: addr, Err: err}
	}
	for {
		name, _, err := s.event()
		if err != nil {
			return &client.AuthError{Addr: addr, Err: err}
		}
		switch {
		case isAuthEvent(name):
			return nil
		case name != nil:
			return &client.AuthError{Addr: addr, Err: &client.ProtocolError{Err: fmt.Errorf("sse: event %q before the auth event", name)}}
		}
	}
}

// readHead reads the answer's status line and headers: 200 with
// text/event-stream, else an *httpStatusError with the start of its body.
func (s *sseConn) readHead() error {
	status := 0
	chunked, eventStream := false, false
	contentLength := -1
	for n, size := 0, 0; ; n++ {
		line, err := s.line(sseMaxHead)
		if err != nil {
			return fmt.Errorf("sse answer head: %w", err)
		}
		if size += len(line) + 2; size > sseMaxHead {
			return &client.ProtocolError{Err: fmt.Errorf("sse answer head over %d bytes", sseMaxHead)}
		}
		if n == 0 {
			proto, rest, _ := bytes.Cut(line, []byte(" "))
			code, _, _ := bytes.Cut(rest, []byte(" "))
			if status, err = strconv.Atoi(string(code)); err != nil || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || status < 100 || status > 999 {
				return &client.ProtocolError{Err: fmt.Errorf("sse: status line %.100q", line)}
			}
			continue
		}
		if len(line) == 0 {
			break
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		v = bytes.TrimSpace(v)
		switch strings.ToLower(string(bytes.TrimSpace(k))) {
		case "content-type":
			mt, _, _ := bytes.Cut(v, []byte(";"))
			eventStream = strings.EqualFold(string(bytes.TrimSpace(mt)), "text/event-stream")
		case "transfer-encoding":
			chunked = !strings.EqualFold(string(v), "identity")
		case "content-length":
			contentLength, _ = strconv.Atoi(string(v))
		}
	}
	if status != 200 {
		e := &httpStatusError{Status: status}
		if contentLength > 0 && !chunked {
			b := make([]byte, min(contentLength, 256))
			n, _ := io.ReadFull(s.br, b)
			e.Text = strings.TrimSpace(string(b[:n]))
		}
		return e
	}
	if !eventStream || chunked {
		return &client.ProtocolError{Err: errors.New("sse: answer is not an unencoded text/event-stream")}
	}
	return nil
}

// line reads the next line without its end ("\n" or "\r\n"), at most max
// bytes. It aliases the read buffer, or s.long for a line longer than it,
// until the next read.
func (s *sseConn) line(maxLen int) ([]byte, error) {
	b, err := s.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		s.long = append(s.long[:0], b...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if b, err = s.br.ReadSlice('\n'); len(s.long)+len(b) > maxLen+2 {
				return nil, &client.ProtocolError{Err: fmt.Errorf("sse: line over %d bytes", maxLen)}
			}
			s.long = append(s.long, b...)
		}
		b = s.long
	}
	if err != nil {
		if len(b) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) > maxLen {
		return nil, &client.ProtocolError{Err: fmt.Errorf("sse: line over %d bytes", maxLen)}
	}
	return b, nil
}

// event reads up to the next event or comment: for an event its name
// ("message" when it has none) and data (aliasing s.data until the next
// call), for a comment a nil name. Fields other than event and data are
// skipped, as are blocks without data (the retry block).
func (s *sseConn) event() (name, data []byte, err error) {
	s.data = s.data[:0]
	name = s.name[:0]
	hasData := false
	for {
		line, err := s.line(sseMaxLine)
		if err != nil {
			return nil, nil, err
		}
		if len(line) == 0 {
			if !hasData {
				name = name[:0]
				continue
			}
			if len(name) == 0 {
				name = append(name, "message"...)
			}
			if cap(s.long) > 4096 {
				s.long = nil // an exceptional line: not kept for the connection's life
			}
			return name, s.data, nil
		}
		if line[0] == ':' {
			if !hasData && len(name) == 0 {
				return nil, nil, nil
			}
			continue // a comment inside an event
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value, _ = bytes.CutPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			if len(value) > len(s.name) {
				return nil, nil, &client.ProtocolError{Err: fmt.Errorf("sse: event name %.40q", value)}
			}
			name = append(name[:0], value...)
		case "data":
			if hasData {
				s.data = append(s.data, '\n')
			}
			if len(s.data)+len(value) > sseMaxData {
				return nil, nil, &client.ProtocolError{Err: fmt.Errorf("sse: event data over %d bytes", sseMaxData)}
			}
			s.data = append(s.data, value...)
			hasData = true
		}
	}
}

// ReadFrames reads the next event or comment and calls fn once: an event
// "<op>" as a frame of that op with the data as its body, "<op>.base64"
// with the data decoded, a heartbeat comment as a heartbeat reply (op 3),
// an "auth" event as an auth reply (op 8). Body is valid only during the
// call. Errors: *client.ProtocolError for an event that is not a push,
// client.ErrClosed after Close, else the network error (io.EOF when the
// comet ended the stream).
func (s *sseConn) ReadFrames(fn func(client.Frame)) error {
	if s.closed.Load() {
		return client.ErrClosed
	}
	name, data, err := s.event()
	if err != nil {
		if s.closed.Load() && errors.Is(err, net.ErrClosed) {
			return client.ErrClosed
		}
		return err
	}
	if name == nil {
		fn(client.Frame{Op: protocol.OpHeartbeatReply})
		return nil
	}
	opName, b64 := bytes.CutSuffix(name, []byte(".base64"))
	op := protocol.OpAuthReply
	if !isAuthEvent(name) {
		var ok bool
		if op, ok = parseOp(opName); !ok {
			return &client.ProtocolError{Err: fmt.Errorf("sse: event %q", name)}
		}
	}
	if b64 {
		// Decoded behind the data in the same buffer.
		start := len(s.data)
		s.data = append(s.data, make([]byte, base64.StdEncoding.DecodedLen(len(data)))...)
		n, err := base64.StdEncoding.Decode(s.data[start:], s.data[:start])
		if err != nil {
			return &client.ProtocolError{Err: fmt.Errorf("sse: event %q: %w", name, err)}
		}
		data = s.data[start : start+n]
	}
	fn(client.Frame{Op: op, Body: data})
	return nil
}

// parseOp parses an event name's op: decimal digits of an int32 (no
// sign), without allocating.
func parseOp(b []byte) (int32, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n > math.MaxInt32 {
		return 0, false
	}
	return int32(n), true
}

// isAuthEvent reports whether name is the auth reply's event ("auth", or
// "auth.base64" for a reply body that is not text).
func isAuthEvent(name []byte) bool {
	return string(name) == "auth" || string(name) == "auth.base64"
}

// Heartbeat does nothing: an SSE client sends nothing after its request.
func (s *sseConn) Heartbeat() error { return nil }

// Close closes the stream; a blocked ReadFrames returns client.ErrClosed.
func (s *sseConn) Close() error {
	if s.closed.Swap(true) {
		return client.ErrClosed
	}
	return s.nc.Close()
}
