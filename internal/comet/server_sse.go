package comet

// Server-Sent Events: GET sse.path on a WebSocket or WSS listener, for
// browsers without a goim client (EventSource). The query is the auth
// body; the answer is a text/event-stream that starts with the reconnect
// delay (retry:) and the auth reply (event: auth), then carries one event
// per push (event: <op>) and a comment line (":") every heartbeat. The
// client sends nothing after its request. docs/protocol.md describes the
// format.
//
// An SSE channel is a Channel of transport transportSSE. It is given what
// every other channel is given, the TCP bytes of a frame (frame.bytes), and
// turns them into events on its own write path (writeSSE, from the write
// loop): it never writes inline, so room fan-outs queue the bytes for it
// and never send to it through io_uring (its fd is -1), and the TCP and
// WebSocket paths pay nothing for it.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/jitter"
)

// Bounds on an SSE request.
const (
	// maxSSERequest bounds the request head (request line and headers).
	maxSSERequest = 16 << 10
	// maxSSEQuery bounds the query string; the auth body made of it must
	// also fit protocol.max_body, as an auth frame's body does.
	maxSSEQuery = 8 << 10
	// maxSSEPlatform bounds the platform parameter.
	maxSSEPlatform = 64
	// maxSSEOrigin bounds an Origin header echoed in
	// Access-Control-Allow-Origin.
	maxSSEOrigin = 512
)

// probeSize is the buffer of the reader that peeks at a WebSocket
// listener's request line: enough for "GET " + sse.path + one byte.
const probeSize = 4 + maxSSEPath + 64

// probes recycles the readers routeHTTP peeks with.
var probes = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, probeSize) }}

// routeHTTP reads the start of an HTTP request on a WebSocket or WSS
// listener: a GET of sse.path turns the channel into an SSE stream and
// fills p with the auth frame its query makes; anything else goes to the
// WebSocket upgrade.
func (c *Channel) routeHTTP(p *protocol.Proto) (cookie string, err error) {
	path := c.srv.cfg.SSE.Path
	if path == "" {
		return c.upgrade(c.conn)
	}
	br := probes.Get().(*bufio.Reader)
	br.Reset(c.conn)
	defer func() {
		br.Reset(nil)
		probes.Put(br)
	}()
	rw := struct {
		io.Reader
		io.Writer
	}{br, c.conn}
	head, err := br.Peek(len("GET ") + len(path) + 1)
	if err != nil || !isSSERequest(head, path) {
		return c.upgrade(rw) // a request too short for SSE fails there too
	}
	return c.startSSE(br, p)
}

// isSSERequest reports whether head, the first bytes of a request, starts
// a GET of path ("GET " + path + "?" or " ").
func isSSERequest(head []byte, path string) bool {
	rest, ok := bytes.CutPrefix(head, []byte("GET "))
	if !ok {
		return false
	}
	rest, ok = bytes.CutPrefix(rest, []byte(path))
	return ok && len(rest) > 0 && (rest[0] == '?' || rest[0] == ' ')
}

// sseStatusError is a refusal of an SSE request with its own HTTP status
// (the others get the status of their close reason, sseStatus).
type sseStatusError struct {
	status int
	err    error
}

func (e *sseStatusError) Error() string { return e.err.Error() }
func (e *sseStatusError) Unwrap() error { return e.err }

// errSSEBadQuery is wrapped by every refusal of an SSE query.
var errSSEBadQuery = errors.New("sse: bad query")

// startSSE makes the channel an SSE stream and reads its request from br:
// the Origin check (websocket.origins), the Cookie for logic, and the query,
// which becomes the auth frame in p. It returns the Cookie header.
func (c *Channel) startSSE(br *bufio.Reader, p *protocol.Proto) (cookie string, err error) {
	s := c.srv
	s.metrics.connsBy[c.tr].Dec()
	c.tr = transportSSE
	s.metrics.connsBy[c.tr].Inc()
	c.out.tryFn, c.out.fd = nil, -1 // no inline write, no io_uring send

	req, err := http.ReadRequest(bufio.NewReaderSize(io.LimitReader(br, maxSSERequest), 1024))
	if err != nil {
		return "", fail(ReasonBadFrame, fmt.Errorf("sse: request over %d bytes or malformed: %w", maxSSERequest, err))
	}
	if req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
		return "", fail(ReasonBadFrame, errors.New("sse: a request with a body"))
	}
	if origin := req.Header.Get("Origin"); origin != "" {
		origins := s.cfg.WebSocket.Origins
		if len(origins) > 0 && !slices.Contains(origins, origin) {
			return "", fail(ReasonBadFrame, &sseStatusError{status: http.StatusForbidden, err: errors.New("sse: origin not allowed")})
		}
		if len(origin) > maxSSEOrigin || strings.ContainsFunc(origin, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			return "", fail(ReasonBadFrame, errors.New("sse: malformed Origin header"))
		}
		c.wsMsg = []byte("Access-Control-Allow-Origin: " + origin + "\r\nVary: Origin\r\n")
	}
	if s.draining.Load() {
		// Accepted just before the drain closed the listeners: 503 now
		// rather than a stream the drain would not end.
		return "", fail(ReasonDrain, errors.New("sse: the comet is draining"))
	}
	cookie = strings.Join(req.Header.Values("Cookie"), "; ")
	q, err := parseSSEQuery(req.URL.RawQuery, s.cfg.Protocol.MaxBody)
	if err != nil {
		return "", fail(ReasonBadAuth, err)
	}
	c.sseBase64 = q.base64
	*p = protocol.Proto{Ver: protocol.Version, Op: protocol.OpAuth, Body: q.body}
	return cookie, nil
}

// sseQuery is what an SSE request's query says: the auth body and the
// encoding of the bodies.
type sseQuery struct {
	body   []byte // the auth body (protocol.AuthBody as JSON)
	base64 bool   // encoding=base64
}

// parseSSEQuery turns an SSE request's query into the auth body, each
// input bounded: token, room (room_id, checked with protocol.CheckRoomID),
// accepts (comma-separated ops, at most maxWatched), platform (default
// "web"), mid, key (protocol.CheckKey) and encoding ("text" or "base64").
// Other parameters are ignored (a cache-busting one, say); a known one
// given twice is an error. The body must fit maxBody bytes, as an auth
// frame's body does.
func parseSSEQuery(raw string, maxBody int) (sseQuery, error) {
	var q sseQuery
	if len(raw) > maxSSEQuery {
		return q, fmt.Errorf("%w: query over %d bytes", errSSEBadQuery, maxSSEQuery)
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, fmt.Errorf("%w: %w", errSSEBadQuery, err)
	}
	get := func(name string) (string, error) {
		v := vals[name]
		if len(v) > 1 {
			return "", fmt.Errorf("%w: %s given %d times", errSSEBadQuery, name, len(v))
		}
		if len(v) == 0 {
			return "", nil
		}
		return v[0], nil
	}
	var a protocol.AuthBody
	var v string
	if a.Token, err = get("token"); err != nil {
		return q, err
	}
	if a.RoomID, err = get("room"); err != nil {
		return q, err
	}
	if a.RoomID != "" {
		if err := protocol.CheckRoomID(a.RoomID); err != nil {
			return q, fmt.Errorf("%w: room: %w", errSSEBadQuery, err)
		}
	}
	if v, err = get("accepts"); err != nil {
		return q, err
	}
	if a.Accepts, err = parseSSEAccepts(v); err != nil {
		return q, err
	}
	if a.Platform, err = get("platform"); err != nil {
		return q, err
	}
	if a.Platform == "" {
		a.Platform = "web"
	}
	if len(a.Platform) > maxSSEPlatform || !utf8.ValidString(a.Platform) {
		return q, fmt.Errorf("%w: platform over %d bytes or not UTF-8", errSSEBadQuery, maxSSEPlatform)
	}
	if v, err = get("mid"); err != nil {
		return q, err
	}
	if v != "" {
		if a.Mid, err = strconv.ParseInt(v, 10, 64); err != nil {
			return q, fmt.Errorf("%w: mid %q is not an integer", errSSEBadQuery, v)
		}
	}
	if a.Key, err = get("key"); err != nil {
		return q, err
	}
	if a.Key != "" {
		if err := protocol.CheckKey(a.Key); err != nil {
			return q, fmt.Errorf("%w: key: %w", errSSEBadQuery, err)
		}
	}
	if !utf8.ValidString(a.Token) {
		return q, fmt.Errorf("%w: token is not UTF-8", errSSEBadQuery)
	}
	if v, err = get("encoding"); err != nil {
		return q, err
	}
	switch v {
	case "", "text":
	case "base64":
		q.base64 = true
	default:
		return q, fmt.Errorf("%w: encoding %q, want text or base64", errSSEBadQuery, v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(a); err != nil {
		return q, fmt.Errorf("%w: %w", errSSEBadQuery, err)
	}
	q.body = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(q.body) > maxBody {
		return q, fmt.Errorf("%w: auth body of %d bytes, protocol.max_body is %d", errSSEBadQuery, len(q.body), maxBody)
	}
	return q, nil
}

// parseSSEAccepts parses the accepts parameter, "1000,1001": at most
// maxWatched ops, each a decimal int32; "" is none.
func parseSSEAccepts(v string) ([]int32, error) {
	ops := []int32{}
	if v == "" {
		return ops, nil
	}
	if n := strings.Count(v, ",") + 1; n > maxWatched {
		return nil, fmt.Errorf("%w: accepts lists %d ops, at most %d", errSSEBadQuery, n, maxWatched)
	}
	for f := range strings.SplitSeq(v, ",") {
		op, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: accepts entry %q is not an op", errSSEBadQuery, f)
		}
		ops = append(ops, int32(op))
	}
	return ops, nil
}

// sseStatus is the HTTP status an SSE request refused for reason gets.
// EventSource treats any status but 200 as fatal: it does not reconnect.
func sseStatus(reason CloseReason) int {
	switch reason {
	case ReasonBadFrame, ReasonBadAuth, ReasonBadRoom:
		return http.StatusBadRequest
	case ReasonAuthRejected:
		return http.StatusUnauthorized
	case ReasonRoomDenied:
		return http.StatusForbidden
	case ReasonAuthRate:
		return http.StatusTooManyRequests
	default: // logic_error, too_many_rooms, drain, shutdown
		return http.StatusServiceUnavailable
	}
}

// sseRefuse closes an SSE request the handshake failed with err, answering
// an HTTP error status first unless the connection is already closed (a
// handshake timeout, shutdown) or the client went away.
func (c *Channel) sseRefuse(err error) {
	reason := ReasonBadFrame
	var ce *closeError
	if errors.As(err, &ce) {
		reason = ce.reason
	}
	if reason == ReasonClientClosed {
		c.close(reason)
		return
	}
	status := sseStatus(reason)
	var se *sseStatusError
	if errors.As(err, &se) {
		status = se.status
	}
	c.closeWith(c.sseErrorStatus(status, reason), reason)
}

// sseError is the HTTP answer refusing an SSE request for reason.
func (c *Channel) sseError(reason CloseReason) []byte {
	return c.sseErrorStatus(sseStatus(reason), reason)
}

// sseErrorStatus is an HTTP error answer with status and the reason's
// name as its text body, with the CORS headers of an allowed origin (a
// browser reads the status only with them).
func (c *Channel) sseErrorStatus(status int, reason CloseReason) []byte {
	body := reason.String() + "\n"
	b := make([]byte, 0, 256+len(c.wsMsg))
	b = fmt.Appendf(b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n"...)
	b = fmt.Appendf(b, "Content-Length: %d\r\n", len(body))
	b = append(b, c.wsMsg...)
	c.wsMsg = nil
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// sseHello is the start of an accepted stream: the response head, the
// reconnect delay (sse.retry jittered by sse.retry_jitter) and the auth
// reply as the event "auth".
func (c *Channel) sseHello(authReply []byte) []byte {
	cfg := &c.srv.cfg.SSE
	b := make([]byte, 0, 256+len(c.wsMsg)+2*len(authReply))
	b = append(b, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\n"...)
	b = append(b, c.wsMsg...)
	c.wsMsg = nil
	b = append(b, "\r\nretry: "...)
	b = strconv.AppendInt(b, jitter.Spread(cfg.Retry.D(), cfg.RetryJitter).Milliseconds(), 10)
	b = append(b, "\n\n"...)
	return appendSSEEvent(b, []byte("auth"), authReply, c.sseBase64)
}

// sseComment is the heartbeat an SSE stream is given, a comment line.
// Shared, never modified: the write path knows it by its address.
var sseComment = []byte(":\n")

// ssePeriod is the stream's heartbeat period: sse.heartbeat, at most half
// the session timeout logic gave.
func (c *Channel) ssePeriod() time.Duration {
	return min(c.srv.cfg.SSE.Heartbeat.D(), max(c.session/2, time.Second))
}

// armSSEHeartbeat arms the stream's next heartbeat, unless it closed.
func (c *Channel) armSSEHeartbeat() {
	c.srv.wheel.Add(&c.timer, c.ssePeriod(), c)
	if c.closeReason() != reasonNone {
		c.srv.wheel.Del(&c.timer) // closed meanwhile: its close found nothing armed
	}
}

// sseHeartbeat is the heartbeat of an SSE stream, on the timer wheel: a
// comment line (a full queue closes the stream as a slow consumer, a
// failed write as a write error), and the session's renewal in logic when
// it is due, on a goroutine of its own, as renewSession does for a client's
// heartbeat. The next heartbeat is armed after the renewal, so only one
// runs at a time and it owns the renewal state (nextRenew, renewGen).
func (c *Channel) sseHeartbeat() {
	c.pushReply(sseComment)
	if c.closeReason() != reasonNone {
		return
	}
	s := c.srv
	if time.Since(s.born) < c.nextRenew && s.logic.generation() == c.renewGen {
		c.armSSEHeartbeat()
		return
	}
	if !s.goFunc(func() {
		c.renewSession()
		c.armSSEHeartbeat()
	}) {
		c.close(ReasonShutdown)
	}
}

// serveSSE is an SSE stream's read loop: the client sends nothing after
// its request, so it waits for the end of the connection. Anything the
// client sends closes it (bad_frame).
func (c *Channel) serveSSE() error {
	if err := waitReadable(c.rc); err != nil { // nil rc (over TLS): at once, the read waits
		return fail(ReasonClientClosed, err)
	}
	var b [16]byte
	n, err := c.conn.Read(b[:])
	if n > 0 {
		return fail(ReasonBadFrame, errors.New("sse: the client sent data after its request"))
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return fail(ReasonClientClosed, err)
}

// writeSSE writes batch, frames an SSE channel was given, as events, and
// returns the bytes written. It is the write loop's write for an SSE
// channel.
func (c *Channel) writeSSE(batch [][]byte) (int, error) {
	size := 0
	for _, b := range batch {
		size += len(b)
	}
	out := make([]byte, 0, size+size/2+64*len(batch))
	for _, b := range batch {
		out = c.appendSSE(out, b)
	}
	n, err := c.conn.Write(out)
	return n, err
}

// appendSSE appends to dst the events of b: the heartbeat comment, or one
// event per frame of b, a sequence of TCP frames, whose op-9 frames are
// unpacked (one event per inner frame). Bytes that do not parse as frames
// are dropped: job sends what comets relay, the comet only relays.
func (c *Channel) appendSSE(dst, b []byte) []byte {
	if len(b) == len(sseComment) && &b[0] == &sseComment[0] {
		return append(dst, sseComment...)
	}
	var name [16]byte
	var p protocol.Proto
	for len(b) > 0 {
		n, err := p.Decode(b, protocol.MaxPackLen)
		if err != nil {
			break
		}
		b = b[n:]
		if p.Op != protocol.OpRaw {
			dst = appendSSEEvent(dst, strconv.AppendInt(name[:0], int64(p.Op), 10), p.Body, c.sseBase64)
			continue
		}
		var inner protocol.Proto
		for body := p.Body; len(body) > 0; {
			m, err := inner.Decode(body, protocol.MaxPackLen)
			if err != nil {
				break
			}
			body = body[m:]
			dst = appendSSEEvent(dst, strconv.AppendInt(name[:0], int64(inner.Op), 10), inner.Body, c.sseBase64)
		}
	}
	return dst
}

// appendSSEEvent appends one event named name with body as its data. In
// text mode (b64 false) a body that is valid UTF-8 without NUL or CR goes
// as text, one "data: " line per line ("\n"-separated), which EventSource
// joins with "\n": the body round-trips exactly; any other body goes
// base64 (standard encoding) under the name name + ".base64". In base64
// mode every body goes base64 under name.
func appendSSEEvent(dst, name, body []byte, b64 bool) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, name...)
	if !b64 && sseText(body) {
		dst = append(dst, '\n')
		for {
			dst = append(dst, "data: "...)
			i := bytes.IndexByte(body, '\n')
			if i < 0 {
				dst = append(dst, body...)
				break
			}
			dst = append(dst, body[:i+1]...)
			body = body[i+1:]
		}
	} else {
		if !b64 {
			dst = append(dst, ".base64"...)
		}
		dst = append(dst, "\ndata: "...)
		dst = base64.StdEncoding.AppendEncode(dst, body)
	}
	return append(dst, "\n\n"...)
}

// sseText reports whether body can go as text in an event: valid UTF-8
// without NUL or CR.
func sseText(body []byte) bool {
	return bytes.IndexByte(body, 0) < 0 && bytes.IndexByte(body, '\r') < 0 && utf8.Valid(body)
}
